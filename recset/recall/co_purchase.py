"""``co_purchase`` (related products): Ochiai collaborative filtering on purchase vectors.

Two items are related when the same baskets (``unit = "basket"``, the default: bought
together in one order) or the same users (``unit = "user"``: bought by the same people, at any
time) hold both. Counted at product level when the catalog groups items into products.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.recall._base import SourceConfig, register_recall
from recset.recall._cooccurrence import PairConfig, PairRecall, unit_groups
from recset.signals import Signals


class CoPurchaseConfig(PairConfig):
    """:class:`PairConfig` plus ``unit``: count co-occurrence per basket or per user."""

    unit: Literal["basket", "user"] = "basket"


@register_recall("co_purchase")
class CoPurchaseRecall(PairRecall):
    """Items bought together with the seed (Ochiai on basket or user purchase vectors)."""

    signals = ("co_purchase",)

    Config: ClassVar[type[SourceConfig]] = CoPurchaseConfig
    config: CoPurchaseConfig

    def _groups(
        self, signals: Signals, unit_of_item: NDArray[np.int32], n_units: int
    ) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        kind = "basket" if self.config.unit == "basket" else "user_purchase"
        return unit_groups(signals, kind, unit_of_item, n_units)
