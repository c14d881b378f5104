"""Behaviour signals: co-purchase, co-view, purchase-after-view, user x category, ..."""

from recset.signals._signals import Signals
from recset.signals._topk import csr_gather, pair_lookup, topk_rows

__all__ = ["Signals", "csr_gather", "pair_lookup", "topk_rows"]
