"""``bought_after``: what a user buys on the next trip after buying the seed.

A sequential source over each user's consecutive baskets: ``a -> b`` counts the baskets
holding ``a`` whose user's next basket holds ``b`` (``b`` may be in the seed's basket too).
Co-purchase sees what goes in one basket; this sees what follows it (the refill of a
consumable, the accessory bought once the device is home, the next step of a recipe), which
reaches items outside the seed's own co-purchase row: candidates for discovery
(docs/ranking.md). Scored like the pair sources (``similarity``: confidence by default,
``n(a -> b) / n(a with a next basket)``). Item level only.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.recall._base import SourceConfig, register_recall
from recset.recall._cooccurrence import PairConfig, PairRecall
from recset.signals import Signals


def transitions(signals: Signals, n_items: int) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
    """Item x item counts of ``a`` in a basket and ``b`` in the user's next basket (zero
    diagonal), and per item the number of baskets holding it that have a next basket (for
    an item never followed by one: the number of next baskets holding it)."""
    b = signals.dataset.baskets
    order = np.lexsort((b.timestamp, b.user))
    same_user = b.user[order][1:] == b.user[order][:-1]
    prev, nxt = order[:-1][same_user], order[1:][same_user]
    m = b.matrix(n_items)
    counts = (m[prev].T @ m[nxt]).tocsr().astype(np.float32)
    counts.setdiag(0)
    counts.eliminate_zeros()
    occ = np.asarray(m[prev].sum(axis=0)).ravel().astype(np.float32)
    # an item only ever seen on a last trip is a candidate, never a seed: its occurrences as
    # a next trip scale it on the candidate side (confidence does not read them)
    after = np.asarray(m[nxt].sum(axis=0)).ravel().astype(np.float32)
    return counts, np.where(occ > 0, occ, after)


@register_recall("bought_after")
class BoughtAfterRecall(PairRecall):
    """Items bought on the user's next trip after a trip holding the seed."""

    Config: ClassVar[type[SourceConfig]] = PairConfig
    config: PairConfig
    product_level: ClassVar[bool] = False
    signals = ()

    def _counts(
        self, signals: Signals, unit_of_item: NDArray[np.int32], n_units: int
    ) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        return transitions(signals, n_units)
