"""Precomputed candidate lists: dense top-N per seed plus sparse per-source reasons.

Stored as one versioned artifact state of plain ``.npy`` files (memory-mapped on load, no
pickle): ``item`` and ``score`` of
shape (n_seeds, N), and the reasons as CSR-like arrays: for seed ``s`` the entries
``ptr[s]:ptr[s+1]`` give ``pos`` (position in the row), ``src`` (source index), ``src_score``
and ``src_rank``.

:class:`ListsWriter` builds them a chunk of seeds at a time: each chunk of the mixer's dense
output (which holds a score and a rank per source for every entry) is compacted to those
arrays and appended to ``.npy`` files on disk at once, so memory holds one chunk, never every
seed's per-source arrays; the finished files are read back memory-mapped.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from recset.errors import StorageError
from recset.pipeline import Candidates
from recset.storage import read_state, write_state

_FILES = ("item", "score", "ptr", "pos", "src", "src_score", "src_rank")
_DTYPES = {
    "item": np.int32,
    "score": np.float32,
    "ptr": np.int64,
    "pos": np.int16,
    "src": np.int8,
    "src_score": np.float32,
    "src_rank": np.int32,
}
_FORMAT_VERSION = 1


def _compact(m: Candidates) -> dict[str, NDArray[np.generic]]:
    """One chunk of dense mixer output as list arrays (``ptr`` holds the per-seed counts)."""
    present = m.source_rank >= 0  # (n, N, S)
    seed_i, pos_i, src_i = np.nonzero(present)
    return {
        "item": m.item,
        "score": m.score,
        "ptr": np.bincount(seed_i, minlength=m.item.shape[0]).astype(np.int64),
        "pos": pos_i.astype(np.int16),
        "src": src_i.astype(np.int8),
        "src_score": m.source_score[seed_i, pos_i, src_i].astype(np.float32),  # type: ignore[index]
        "src_rank": m.source_rank[seed_i, pos_i, src_i].astype(np.int32),  # type: ignore[index]
    }


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
        """Concatenate the mixer's output for consecutive seed rows (all in memory)."""
        items, scores, ptrs, poss, srcs, sscores, sranks = [], [], [], [], [], [], []
        offset = 0
        for m in chunks:
            c = _compact(m)
            items.append(c["item"])
            scores.append(c["score"])
            ptrs.append(offset + np.cumsum(c["ptr"]))
            offset += int(c["ptr"].sum())
            poss.append(c["pos"])
            srcs.append(c["src"])
            sscores.append(c["src_score"])
            sranks.append(c["src_rank"])
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


def _header(dtype: type[np.generic], shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    d = {"descr": npy_format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    npy_format.write_array_header_1_0(buf, {**d, "shape": shape})
    return buf.getvalue()


class ListsWriter:
    """Appends consecutive chunks of the mixer's output to ``.npy`` files, one per array.

    Parameters
    ----------
    n_seeds : int
        Rows expected in all (:meth:`close` checks them).
    width : int
        Candidates per row.
    directory : path, optional
        Where the files go; a new temporary directory when omitted, removed as soon as the
        lists are memory-mapped on POSIX (the maps keep the unlinked files readable), else
        when the returned lists are garbage collected.

    Each file starts with a header for an empty array, rewritten with the real length on
    :meth:`close` (numpy reserves room in the header for the first axis to grow), so nothing
    is copied twice and memory holds one chunk at a time.
    """

    def __init__(self, n_seeds: int, width: int, directory: Path | None = None) -> None:
        self.n_seeds = n_seeds
        self.width = width
        self._temp = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="recset-lists-")) if directory is None else directory
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._rows = 0
        self._entries = 0
        self._files: dict[str, BinaryIO] = {}
        for name in _FILES:
            f = open(self._path(name), "wb")  # noqa: SIM115 (closed in close())
            f.write(_header(_DTYPES[name], self._shape(name, 0)))
            self._files[name] = f
        self._files["ptr"].write(np.zeros(1, np.int64).tobytes())

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.npy"

    def _shape(self, name: str, n: int) -> tuple[int, ...]:
        return (n, self.width) if name in ("item", "score") else (n,)

    def add(self, chunk: Candidates) -> None:
        """Append the lists of the next ``len(chunk)`` seeds."""
        if chunk.item.shape[1] != self.width:
            raise ValueError(
                f"chunk width {chunk.item.shape[1]} differs from the writer's {self.width}"
            )
        c = _compact(chunk)
        c["ptr"] = self._entries + np.cumsum(c["ptr"])
        for name in _FILES:
            self._files[name].write(np.ascontiguousarray(c[name], dtype=_DTYPES[name]).tobytes())
        self._rows += chunk.item.shape[0]
        self._entries = int(c["ptr"][-1]) if len(c["ptr"]) else self._entries

    def close(self) -> PrecomputedLists:
        """Finish the files and return the lists, memory-mapped from them."""
        if self._rows != self.n_seeds:
            self.abort()
            raise StorageError(
                f"{self.directory}: {self._rows} list rows written, expected {self.n_seeds}"
            )
        lengths = {"item": self._rows, "score": self._rows, "ptr": self._rows + 1}
        for name, f in self._files.items():
            head = _header(_DTYPES[name], self._shape(name, lengths.get(name, self._entries)))
            if len(head) != len(_header(_DTYPES[name], self._shape(name, 0))):
                raise StorageError(f"{self._path(name)}: the .npy header cannot be rewritten")
            f.seek(0)
            f.write(head)
            f.close()
        self._files = {}
        arrays = {n: np.load(self._path(n), mmap_mode="r", allow_pickle=False) for n in _FILES}
        lists = PrecomputedLists(**arrays)
        if self._temp:
            if os.name == "posix":
                # the memory maps keep the unlinked files readable, and nothing is left
                # behind even when the process is killed
                shutil.rmtree(self.directory, ignore_errors=True)
            else:
                weakref.finalize(lists, shutil.rmtree, self.directory, True)
        return lists

    def abort(self) -> None:
        """Close and delete what was written (a temporary directory goes entirely)."""
        for f in self._files.values():
            f.close()
        self._files = {}
        if self._temp:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            for name in _FILES:
                self._path(name).unlink(missing_ok=True)
