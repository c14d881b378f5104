"""``co_purchase_only``: pairs bought together but never co-viewed nor purchased-after-viewed.

Co-views and purchase-after-view mark substitutes (shoppers compare, then pick one); pairs
that are only ever co-purchased are the cleaner complementarity signal
(shared/seeds/complementary-type-transition.txt). What counts as a disqualifying view is
``exclude`` (see :class:`CoPurchaseOnlyConfig`). The pairs are directed where the order
within a basket is known: ``a -> b`` counts baskets where ``a`` was added before ``b``, so a
camera recalls its SD card without the SD card recalling the camera. Item level only.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.recall._base import SourceConfig, register_recall
from recset.recall._cooccurrence import PairConfig, PairRecall
from recset.signals import Signals


class CoPurchaseOnlyConfig(PairConfig):
    """:class:`PairConfig` plus ``exclude``: which views disqualify a co-purchased pair.

    ``"substitution"`` (default): co-views and view-then-buy-another count only from sessions
    where the two items were not bought together, i.e. where the views were a comparison;
    ``"any"``: any co-view or purchase-after-view at all (the strict reading, which on data
    where shoppers look at an accessory before adding it to the basket removes most true
    complements).
    """

    exclude: Literal["substitution", "any"] = "substitution"


@register_recall("co_purchase_only")
class CoPurchaseOnlyRecall(PairRecall):
    """Directed co-purchase-only pairs, normalised by basket counts."""

    signals = ("co_purchase_only",)

    Config: ClassVar[type[SourceConfig]] = CoPurchaseOnlyConfig
    config: CoPurchaseOnlyConfig
    product_level: ClassVar[bool] = False

    def _counts(
        self, signals: Signals, unit_of_item: NDArray[np.int32], n_units: int
    ) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        pairs = (
            signals.co_purchase_only_substitution
            if self.config.exclude == "substitution"
            else signals.co_purchase_only
        )
        return pairs, signals.occurrences("basket")
