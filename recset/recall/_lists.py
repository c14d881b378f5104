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

Saving such lists into a store does not read them again: the writer keeps its files open,
and :meth:`PrecomputedLists.save` hard-links a temporary writer's files into the artifact
directory (Linux: the files are anonymous ``O_TMPFILE`` files, linked through
``/proc/self/fd``) or, on another filesystem or system, copies them from the open files in
blocks; neither maps a page of the lists. :func:`scan_blocks` reads a large memory-mapped
array in row blocks and drops each block's pages from the process once read, so checks over
every row (the load test of a saved engine) do not hold the whole file resident either.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

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
_COPY_BLOCK = 16 << 20  # bytes per read when a list file is copied
_SCAN_BLOCK = 64 << 20  # bytes of a memory-mapped array read (then dropped) at once
# why a hard link through /proc/self/fd can fail, so the file is copied instead
_NO_LINK = (errno.EXDEV, errno.ENOENT, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP, errno.EMLINK)


class _ListFiles:
    """The open files behind a writer's memory-mapped lists, so :meth:`PrecomputedLists.save`
    can link or copy them into a store without reading the maps.

    ``anonymous``: the files have no name (``O_TMPFILE``) and can be hard-linked into a
    directory through ``/proc/self/fd``; otherwise (named files, or files already unlinked)
    they are copied from the open descriptors. A named file the user keeps (a writer given a
    ``directory``) is never linked: rewriting it later would change the stored version.
    """

    def __init__(self, files: dict[str, BinaryIO], *, anonymous: bool) -> None:
        self.files = files
        self.anonymous = anonymous

    def export(self, name: str, target: Path) -> str:
        """Put file ``name`` at ``target``; returns ``"link"`` or ``"copy"``."""
        fd = self.files[name].fileno()
        if self.anonymous:
            try:
                _link_open_file(fd, target)
                return "link"
            except OSError as exc:  # another filesystem (EXDEV), no /proc...: copy
                if exc.errno not in _NO_LINK:
                    raise
        size = os.fstat(fd).st_size
        tmp = target.with_name(target.name + ".part")
        with open(tmp, "wb") as out:
            offset = 0
            while offset < size:
                block = _read_at(self.files[name], min(_COPY_BLOCK, size - offset), offset)
                if not block:
                    raise StorageError(
                        f"{target}: the list file {name!r} ended at byte {offset} of {size} "
                        "while it was copied"
                    )
                out.write(block)
                offset += len(block)
        os.replace(tmp, target)
        return "copy"

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files = {}


def scan_blocks(arr: NDArray[Any], rows: int | None = None) -> Iterator[NDArray[Any]]:
    """Consecutive row blocks of ``arr``; for a memory-mapped array, each block's pages are
    dropped from the process (``MADV_DONTNEED``: they stay in the page cache) once the
    consumer asks for the next one, so a pass over a file larger than memory keeps about
    one block resident."""
    row_bytes = max(int(arr.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64))), 1)
    step = max(1, rows if rows is not None else _SCAN_BLOCK // row_bytes)
    base = getattr(arr, "_mmap", None)
    drop = _dropper(base) if isinstance(base, mmap.mmap) else None
    for start in range(0, len(arr), step):
        block = arr[start : start + step]
        yield block
        if drop is not None and block.size:
            drop(block)


def _dropper(mm: mmap.mmap) -> Callable[[NDArray[Any]], None] | None:
    """A function dropping the whole pages under a block of an array mapped by ``mm``."""
    if not hasattr(mmap, "MADV_DONTNEED") or len(mm) == 0:
        return None
    start = np.frombuffer(mm, np.uint8).ctypes.data
    page = mmap.PAGESIZE

    def drop(block: NDArray[Any]) -> None:
        lo = block.ctypes.data - start
        hi = min((lo + block.nbytes) // page * page, len(mm))
        lo = -(-lo // page) * page  # whole pages only: a neighbour's may still be read
        if hi > lo:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    return drop


def _compact(m: Candidates) -> dict[str, NDArray[np.generic]]:
    """One chunk of dense mixer output as list arrays (``ptr`` holds the per-seed counts)."""
    rank = np.ascontiguousarray(m.source_rank)  # (n, N, S)
    n, width, n_src = rank.shape
    # flat positions in C order (what np.nonzero of the 3-d mask gives), split arithmetically:
    # one index array and flat gathers instead of three index arrays and 3-d gathers
    flat = np.flatnonzero(rank.ravel() >= 0)
    per_seed = width * n_src
    return {
        "item": m.item,
        "score": m.score,
        "ptr": np.bincount(flat // per_seed, minlength=n).astype(np.int64),
        "pos": ((flat // n_src) % width).astype(np.int16),
        "src": (flat % n_src).astype(np.int8),
        "src_score": np.ascontiguousarray(m.source_score).ravel()[flat].astype(np.float32),
        "src_rank": rank.ravel()[flat].astype(np.int32),
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
    _files: _ListFiles | None = field(default=None, repr=False, compare=False)

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

    def value_ranges(self) -> dict[str, tuple[int, int]]:
        """(min, max) of ``item``, ``pos`` and ``src`` ((0, -1) when empty), and of the steps
        of ``ptr`` (a negative min: not monotone), read in row blocks whose pages leave the
        process once read (:func:`scan_blocks`): what a load check needs of every row
        without holding the mapped files resident."""
        out: dict[str, tuple[int, int]] = {}
        for name in ("item", "pos", "src"):
            lo, hi = None, None
            for block in scan_blocks(getattr(self, name)):
                if block.size:
                    b_lo, b_hi = int(block.min()), int(block.max())
                    lo = b_lo if lo is None else min(lo, b_lo)
                    hi = b_hi if hi is None else max(hi, b_hi)
            out[name] = (0, -1) if lo is None or hi is None else (lo, hi)
        lo, hi, last = None, None, None
        for block in scan_blocks(self.ptr):
            steps = np.diff(block) if last is None else np.diff(block, prepend=last)
            if len(block):
                last = block[-1]
            if steps.size:
                lo = int(steps.min()) if lo is None else min(lo, int(steps.min()))
                hi = int(steps.max()) if hi is None else max(hi, int(steps.max()))
        out["ptr_step"] = (0, -1) if lo is None or hi is None else (lo, hi)
        return out

    def reasons(
        self, seed: int
    ) -> tuple[NDArray[np.int16], NDArray[np.int8], NDArray[np.float32], NDArray[np.int32]]:
        """(pos, src, score, rank) of every reason of one seed's list."""
        a, b = int(self.ptr[seed]), int(self.ptr[seed + 1])
        return self.pos[a:b], self.src[a:b], self.src_score[a:b], self.src_rank[a:b]

    def save(self, directory: Path) -> None:
        """Write the lists as ``.npy`` files into ``directory``: the bytes ``np.save`` writes;
        lists from a :class:`ListsWriter` have their files linked or copied, not read through
        the maps (see the module notes)."""
        backing = self._files
        files: dict[str, Callable[[Path], None]] = {}
        if backing is not None and backing.files:
            files = {n: (lambda path, n=n: backing.export(n, path)) for n in _FILES}
        write_state(
            directory,
            "lists",
            _FORMAT_VERSION,
            arrays={name: getattr(self, name) for name in _FILES},
            mmap=True,
            files=files,
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
        Where the files go; a new temporary directory when omitted (under ``TMPDIR``: on
        the store's filesystem, saving links the files instead of copying them), removed as
        soon as the lists are memory-mapped on POSIX (the files are anonymous ``O_TMPFILE``
        files on Linux, or unlinked: the maps and the writer's open files keep them
        readable, and nothing is left behind when the process is killed), else when the
        returned lists are garbage collected.

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
        self._anonymous = self._temp and _anonymous_files_work(self.directory)
        for name in _FILES:
            if self._anonymous:
                fd = os.open(self.directory, os.O_TMPFILE | os.O_RDWR, 0o666)
                f = os.fdopen(fd, "w+b")
            else:
                f = open(self._path(name), "w+b")  # noqa: SIM115 (closed with the lists)
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
            f.flush()
        files, self._files = self._files, {}
        arrays = {
            n: np.load(
                f"/proc/self/fd/{f.fileno()}" if self._anonymous else self._path(n),
                mmap_mode="r",
                allow_pickle=False,
            )
            for n, f in files.items()
        }
        backing = _ListFiles(files, anonymous=self._anonymous)
        lists = PrecomputedLists(**arrays, _files=backing)
        if self._temp and os.name == "posix":
            # the memory maps and the open files keep the (anonymous or unlinked) files
            # readable, and nothing is left behind even when the process is killed
            shutil.rmtree(self.directory, ignore_errors=True)
            weakref.finalize(lists, backing.close)
        elif self._temp:
            weakref.finalize(lists, _close_and_remove, backing, self.directory)
        else:
            weakref.finalize(lists, backing.close)
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


def _anonymous_files_work(directory: Path) -> bool:
    """Whether ``directory`` takes ``O_TMPFILE`` files that ``/proc/self/fd`` can reopen
    (Linux on most filesystems; elsewhere the writer uses named files)."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return False
    try:
        fd = os.open(directory, flag | os.O_RDWR, 0o666)
    except OSError:
        return False
    try:
        return os.path.exists(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _read_at(f: BinaryIO, n: int, offset: int) -> bytes:
    """``n`` bytes of ``f`` at ``offset``: ``os.pread`` (no shared file position) where the
    system has it, else a seek and a read."""
    if hasattr(os, "pread"):
        return os.pread(f.fileno(), n, offset)
    f.seek(offset)
    return f.read(n)


def _link_open_file(fd: int, target: Path) -> None:
    """Hard-link the file open as ``fd`` (an ``O_TMPFILE`` file: it has no name) at
    ``target``: ``linkat`` following ``/proc/self/fd/<fd>``. A ``src_dir_fd`` makes Python
    call ``linkat`` with ``AT_SYMLINK_FOLLOW``; plain ``os.link`` calls ``link``, which
    would link the ``/proc`` entry itself (and fails with EXDEV)."""
    proc = os.open("/proc/self/fd", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(str(fd), target, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _close_and_remove(backing: _ListFiles, directory: Path) -> None:
    backing.close()
    shutil.rmtree(directory, ignore_errors=True)
