"""Behaviour signals: co-purchase, co-view, purchase-after-view, user x category, ..."""

from recset.signals._signals import Signals
from recset.signals._topk import (
    TOPK_BLOCK_ENTRIES,
    csr_gather,
    pair_lookup,
    row_blocks,
    run_blocks,
    topk_rows,
    topk_workers,
)

__all__ = [
    "Signals",
    "TOPK_BLOCK_ENTRIES",
    "csr_gather",
    "pair_lookup",
    "row_blocks",
    "run_blocks",
    "topk_rows",
    "topk_workers",
]
