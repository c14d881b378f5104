"""One versioned format for every artifact directory recset writes.

Every fitted component (a recall source, the precomputed lists, the ranker and its features,
the neural stages, the engine itself) persists through :func:`write_state` and reads back
through :func:`read_state`, so each component only says *what* it stores:

- ``<kind>.json``: ``{"kind": ..., "format_version": ..., "meta": {...}}`` (JSON only);
- ``<kind>.npz``: named arrays, written with ``allow_pickle=False`` (no pickle, ever);
- or, with ``mmap=True``, one ``<kind>.<array>.npy`` per array, memory-mapped on read.

A file written for another kind or another format version is refused with a
:class:`~recset.errors.StorageError` that names the file and what to do, never half-read.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recset.errors import StorageError

__all__ = ["State", "read_state", "write_state"]


@dataclass(frozen=True)
class State:
    """What :func:`read_state` returns: the JSON ``meta`` and the named ``arrays``."""

    meta: dict[str, Any]
    arrays: dict[str, NDArray[Any]] = field(default_factory=dict)

    def array(self, name: str, where: Path | str = "") -> NDArray[Any]:
        """One array by name; ``StorageError`` naming the artifact when it is missing."""
        if name not in self.arrays:
            raise StorageError(
                f"{where}: the artifact holds no array {name!r} (it has {sorted(self.arrays)}); "
                "it was written by another recset version: rebuild or retrain it"
            )
        return self.arrays[name]


def _meta_path(directory: Path, kind: str) -> Path:
    return Path(directory) / f"{kind}.json"


def write_state(
    directory: str | Path,
    kind: str,
    version: int,
    *,
    meta: Mapping[str, Any] | None = None,
    arrays: Mapping[str, NDArray[Any]] | None = None,
    mmap: bool = False,
    files: Mapping[str, Callable[[Path], None]] | None = None,
) -> None:
    """Write one component's state into ``directory`` (created when missing).

    Parameters
    ----------
    directory : path
        The component's own directory inside an artifact being written (the store writes the
        whole artifact to a temporary directory and renames it into place).
    kind : str
        What the state is (``"recall_set"``, ``"ranker"``...): checked on read.
    version : int
        The component's format version: bump it whenever the layout changes.
    meta : mapping, optional
        JSON-serialisable settings (configs, names, metrics).
    arrays : mapping of str to ndarray, optional
        Named arrays; object arrays are refused (they would need pickle).
    mmap : bool
        One ``.npy`` per array (memory-mapped by :func:`read_state`) instead of one ``.npz``.
    files : mapping of str to callable, optional
        With ``mmap``: arrays of ``arrays`` whose ``.npy`` file already exists elsewhere;
        ``files[name](path)`` puts it at ``path`` (a hard link or a streamed copy) instead of
        ``np.save`` reading the whole array (which maps every page of a memory-mapped one).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = dict(arrays or {})
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise StorageError(f"{directory}: array {name!r} of {kind!r} has dtype object")
    files = dict(files or {})
    if files and not mmap:
        raise StorageError(f"{directory}: {kind!r}: ready .npy files need the mmap layout")
    if set(files) - set(arrays):
        raise StorageError(
            f"{directory}: {kind!r}: files {sorted(set(files) - set(arrays))} name no array"
        )
    if mmap:
        for name, arr in arrays.items():
            target = directory / f"{kind}.{name}.npy"
            if name in files:
                files[name](target)
            else:
                np.save(target, np.asarray(arr), allow_pickle=False)
    else:
        np.savez(directory / f"{kind}.npz", allow_pickle=False, **arrays)
    doc = {
        "kind": kind,
        "format_version": int(version),
        "arrays": sorted(arrays),
        "mmap": bool(mmap),
        "meta": dict(meta or {}),
    }
    _meta_path(directory, kind).write_text(json.dumps(doc, indent=1), encoding="utf-8")


def read_state(directory: str | Path, kind: str, version: int) -> State:
    """Read what :func:`write_state` wrote for ``kind`` at format ``version``.

    Raises
    ------
    StorageError
        When a file is missing or unreadable, or holds another kind or format version.
    """
    directory = Path(directory)
    path = _meta_path(directory, kind)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StorageError(
            f"{path}: missing; the artifact was not written by this recset version "
            "(rebuild or retrain it)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError(f"{path}: cannot read the artifact metadata ({exc})") from None
    if isinstance(doc, dict) and "kind" not in doc:
        raise StorageError(
            f"{path}: written by an older recset (no artifact kind); rebuild or retrain it"
        )
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        got = doc.get("kind") if isinstance(doc, dict) else doc
        raise StorageError(f"{path}: holds a {got!r} artifact, expected {kind!r}")
    if doc.get("format_version") != version:
        raise StorageError(
            f"{path}: {kind} format version {doc.get('format_version')}, this recset reads "
            f"version {version}; rebuild or retrain it"
        )
    names = doc.get("arrays") or []
    arrays: dict[str, NDArray[Any]] = {}
    try:
        if doc.get("mmap"):
            for name in names:
                arrays[name] = np.load(
                    directory / f"{kind}.{name}.npy", mmap_mode="r", allow_pickle=False
                )
        elif names:
            with np.load(directory / f"{kind}.npz", allow_pickle=False) as z:
                arrays = {name: z[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise StorageError(f"{directory}: cannot read the arrays of {kind!r} ({exc})") from None
    meta = doc.get("meta")
    return State(meta if isinstance(meta, dict) else {}, arrays)
