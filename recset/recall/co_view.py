"""``co_view``: items viewed in the same sessions as the seed (Ochiai on session vectors).

Views carry less intent than purchases but are far more plentiful, so this source raises
coverage; its pairs are mostly substitutes, which the mix's substitute filter removes where the
category's config asks for it. On purchase-only data it answers nothing (no error).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.recall._base import register_recall
from recset.recall._cooccurrence import PairRecall, unit_groups
from recset.signals import Signals


@register_recall("co_view")
class CoViewRecall(PairRecall):
    """Items co-viewed with the seed in sessions, at item or product level."""

    signals = ("co_view",)

    def _groups(
        self, signals: Signals, unit_of_item: NDArray[np.int32], n_units: int
    ) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        return unit_groups(signals, "view_session", unit_of_item, n_units)
