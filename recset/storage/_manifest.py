"""The manifest of an artifact version: every file with its size, checksum and array header.

:meth:`Store.save_artifact` writes ``manifest.json`` into the version's directory once the
files are complete and records the manifest's own checksum in the version's registry row;
:meth:`Store.verify_artifact` checks both before anything is read, so a truncated,
transposed or tampered file is refused with a :class:`~recset.errors.StorageError` naming it
instead of being served (or crashing a loader).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Final

import numpy as np

from recset.errors import StorageError

MANIFEST_NAME: Final[str] = "manifest.json"
MANIFEST_FORMAT: Final[int] = 1
OWNER_NAME: Final[str] = ".recset-owner"
"""Written first into every version directory: which store and process wrote it."""

_ALGORITHM: Final[str] = "sha256"
_SKIP: Final[frozenset[str]] = frozenset({MANIFEST_NAME, OWNER_NAME})


def file_digest(path: Path) -> str:
    """The sha256 of a file, read in chunks (memory stays flat for large arrays)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, _ALGORITHM).hexdigest()


def _npy_header(f: Any) -> dict[str, Any]:
    major, _minor = np.lib.format.read_magic(f)
    if major == 1:
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return {"shape": list(shape), "dtype": dtype.str, "fortran_order": bool(fortran)}


def _describe_arrays(path: Path) -> dict[str, Any]:
    """Shape and dtype of a .npy file, or of every array in a .npz."""
    try:
        if path.suffix == ".npy":
            with path.open("rb") as f:
                return _npy_header(f)
        if path.suffix == ".npz":
            out: dict[str, Any] = {}
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        with z.open(info) as f:
                            out[info.filename[: -len(".npy")]] = _npy_header(f)
            return {"arrays": out}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise StorageError(f"{path}: not a readable array file ({exc})") from None
    return {}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path) -> str:
    """Record every file under ``directory`` in its ``manifest.json``.

    Each file is flushed to disk on the way (the version must survive a crash once its row
    is committed). Symbolic links are refused: every file of a version lives inside it.

    Returns
    -------
    str
        ``"sha256:<hex>"`` of the manifest, for the version's registry row.
    """
    root = directory.resolve()
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            raise StorageError(
                f"{path}: an artifact holds a symbolic link; every file of a version must be "
                "written inside its directory"
            )
        if path.is_dir() or rel in _SKIP:
            continue
        _fsync(path)
        entry: dict[str, Any] = {"size": path.stat().st_size, _ALGORITHM: file_digest(path)}
        entry.update(_describe_arrays(path))
        files[rel] = entry
    doc = {"format": MANIFEST_FORMAT, "algorithm": _ALGORITHM, "files": files}
    data = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8")
    target = root / MANIFEST_NAME
    target.write_bytes(data)
    _fsync(target)
    for d in {p.parent for p in [target, *(root / r for r in files)]}:
        _fsync(d)
    return f"{_ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def _damaged(path: Path, what: str, problem: str) -> StorageError:
    return StorageError(
        f"{path}: {problem}. {what} is damaged and was not loaded; rebuild it, or roll back "
        "to another version (Store.activate)."
    )


def inside(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` resolved; a :class:`StorageError` when it leaves ``root``."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise StorageError(f"{what}: the path {relative!r} leads outside {base}; refused")
    return path


def verify_manifest(directory: Path, expected: str, what: str) -> None:
    """Check every file of a version against its manifest (and the manifest against
    ``expected``, the ``"sha256:<hex>"`` recorded in the registry).

    Raises
    ------
    StorageError
        Naming the first file that is missing, has another size (truncated), another array
        shape or dtype (transposed, rewritten) or another checksum (tampered).
    """
    root = directory.resolve()
    mpath = root / MANIFEST_NAME
    try:
        data = mpath.read_bytes()
    except OSError:
        raise _damaged(mpath, what, "the manifest is missing or unreadable") from None
    algorithm, _, digest = expected.partition(":")
    if algorithm != _ALGORITHM or hashlib.sha256(data).hexdigest() != digest:
        raise _damaged(mpath, what, "the manifest differs from the checksum in the registry")
    try:
        doc = json.loads(data)
        files: dict[str, dict[str, Any]] = doc["files"]
        if doc.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("unknown layout")
    except (ValueError, KeyError, TypeError):
        raise _damaged(mpath, what, "the manifest is not a recset manifest") from None
    for rel, entry in files.items():
        path = inside(root, rel, what)
        if not path.is_file():
            raise _damaged(path, what, "the file is missing")
        size = path.stat().st_size
        if size != entry.get("size"):
            raise _damaged(
                path, what, f"{size} bytes, the manifest records {entry.get('size')} (truncated?)"
            )
        if path.suffix == ".npy":
            got = _describe_arrays(path)
            want = {k: entry.get(k) for k in got}
            if got != want:
                raise _damaged(
                    path,
                    what,
                    f"holds an array of shape {tuple(got['shape'])} dtype {got['dtype']}, "
                    f"the manifest records shape {tuple(want['shape'] or ())} dtype "
                    f"{want['dtype']} (transposed or rewritten)",
                )
        if file_digest(path) != entry.get(_ALGORITHM):
            raise _damaged(path, what, f"its {_ALGORITHM} differs from the manifest (changed)")


__all__ = [
    "MANIFEST_NAME",
    "OWNER_NAME",
    "file_digest",
    "inside",
    "verify_manifest",
    "write_manifest",
]
