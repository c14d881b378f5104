"""``co_purchase_only``: pairs bought together but never co-viewed nor purchased-after-viewed.

Co-views and purchase-after-view mark substitutes (shoppers compare, then pick one); pairs
that are only ever co-purchased are the cleaner complementarity signal
(shared/seeds/complementary-type-transition.txt). The pairs are directed where the order
within a basket is known: ``a -> b`` counts baskets where ``a`` was added before ``b``, so a
camera recalls its SD card without the SD card recalling the camera. Item level only.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.recall._base import register_recall
from recset.recall._cooccurrence import PairRecall
from recset.signals import Signals


@register_recall("co_purchase_only")
class CoPurchaseOnlyRecall(PairRecall):
    """Directed co-purchase-only pairs, Ochiai-normalised by basket counts."""

    product_level: ClassVar[bool] = False

    def _counts(
        self, signals: Signals, unit_of_item: NDArray[np.int32], n_units: int
    ) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        return signals.co_purchase_only, signals.occurrences("basket")
