"""Precomputed candidate lists: dense top-N per seed plus sparse per-source reasons.

Stored as one versioned artifact state of plain ``.npy`` files (memory-mapped on load, no
pickle): ``item`` and ``score`` of
shape (n_seeds, N), and the reasons as CSR-like arrays: for seed ``s`` the entries
``ptr[s]:ptr[s+1]`` give ``pos`` (position in the row), ``src`` (source index), ``src_score``
and ``src_rank``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from recset.pipeline import Candidates
from recset.storage import read_state, write_state

_FILES = ("item", "score", "ptr", "pos", "src", "src_score", "src_rank")
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class PrecomputedLists:
    """Candidate lists of every seed (rows by dense item id) with their reasons."""

    item: NDArray[np.int32]
    score: NDArray[np.float32]
    ptr: NDArray[np.int64]
    pos: NDArray[np.int16]
    src: NDArray[np.int8]
    src_score: NDArray[np.float32]
    src_rank: NDArray[np.int32]

    @property
    def n_seeds(self) -> int:
        return int(self.item.shape[0])

    @classmethod
    def from_chunks(cls, chunks: list[Candidates]) -> PrecomputedLists:
        """Concatenate the mixer's output for consecutive seed rows."""
        items, scores, ptrs, poss, srcs, sscores, sranks = [], [], [], [], [], [], []
        offset = 0
        for m in chunks:
            items.append(m.item)
            scores.append(m.score)
            present = m.source_rank >= 0  # (n, N, S)
            seed_i, pos_i, src_i = np.nonzero(present)
            counts = np.bincount(seed_i, minlength=m.item.shape[0])
            ptrs.append(offset + np.cumsum(counts))
            offset += int(counts.sum())
            poss.append(pos_i.astype(np.int16))
            srcs.append(src_i.astype(np.int8))
            sscores.append(m.source_score[seed_i, pos_i, src_i].astype(np.float32))
            sranks.append(m.source_rank[seed_i, pos_i, src_i].astype(np.int32))
        width = max((x.shape[1] for x in items), default=0)
        return cls(
            item=np.concatenate(items) if items else np.zeros((0, width), np.int32),
            score=np.concatenate(scores) if scores else np.zeros((0, width), np.float32),
            ptr=np.r_[0, *ptrs].astype(np.int64) if ptrs else np.zeros(1, np.int64),
            pos=np.concatenate(poss) if poss else np.zeros(0, np.int16),
            src=np.concatenate(srcs) if srcs else np.zeros(0, np.int8),
            src_score=np.concatenate(sscores) if sscores else np.zeros(0, np.float32),
            src_rank=np.concatenate(sranks) if sranks else np.zeros(0, np.int32),
        )

    def reasons(
        self, seed: int
    ) -> tuple[NDArray[np.int16], NDArray[np.int8], NDArray[np.float32], NDArray[np.int32]]:
        """(pos, src, score, rank) of every reason of one seed's list."""
        a, b = int(self.ptr[seed]), int(self.ptr[seed + 1])
        return self.pos[a:b], self.src[a:b], self.src_score[a:b], self.src_rank[a:b]

    def save(self, directory: Path) -> None:
        write_state(
            directory,
            "lists",
            _FORMAT_VERSION,
            arrays={name: getattr(self, name) for name in _FILES},
            mmap=True,
        )

    @classmethod
    def load(cls, directory: Path) -> PrecomputedLists:
        state = read_state(directory, "lists", _FORMAT_VERSION)
        return cls(**{n: state.array(n, directory) for n in _FILES})
