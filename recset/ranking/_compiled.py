"""Scoring a LightGBM model fast: compiled to native code with lleaves (extra ``recset[fast]``).

The ranker scores a few hundred rows per request; ``Booster.predict`` spends most of that
walking the trees in a generic interpreter. lleaves compiles the LightGBM text model with LLVM
into a function specialised to its trees and to this CPU, which returns the same scores
(double precision, same NaN / missing-value rules) several times faster and releases the GIL
while it runs.

The machine code is cached next to the text model as ``{stem}.{key}.lleaves.o``, where
``key`` hashes the model text, the lleaves and llvmlite versions and the host CPU (name and
features): a cache from another model, another compiler or another machine is never loaded,
it is rebuilt. A cache is written under a temporary name and renamed, so a worker never reads a
half-written one. Inside a store's version directory (one with a ``manifest.json``) only a
cache the manifest lists is used (it was written with the model, before the manifest, and is
checksummed with it); any other one is neither written nor read there: machine code that the
manifest does not vouch for is never loaded, and the model is compiled in memory instead. So
is it when the directory is read-only (the log says so). When lleaves is not installed the
scorer falls back to LightGBM's ``predict`` (one thread), also saying so in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

_log = logging.getLogger(__name__)

CACHE_SUFFIX = ".lleaves.o"
"""Ending of a cached compiled model's file name."""


class Scorer(Protocol):
    """Scores feature rows with a trained model (higher is better)."""

    kind: str

    def predict(self, X: NDArray[np.floating]) -> NDArray[np.float64]: ...


class BoosterScorer:
    """LightGBM's own ``Booster.predict`` on one thread (the fallback)."""

    kind = "lightgbm"

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        return np.asarray(self.booster.predict(X, num_threads=1), dtype=np.float64)


class CompiledScorer:
    """A model compiled by lleaves; ``predict`` runs on the calling thread, without the GIL."""

    kind = "lleaves"

    def __init__(self, model: Any, n_features: int) -> None:
        self.model = model
        self.n_features = int(n_features)

    def predict(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {X.shape}")
        if not len(X):
            return np.zeros(0)
        return np.asarray(self.model.predict(X, n_jobs=1), dtype=np.float64)


class MeanScorer:
    """The mean score of several models (the members of a bagged discovery model)."""

    def __init__(self, members: list[Scorer]) -> None:
        if not members:
            raise ValueError("a mean of no models")
        self.members = members
        self.kind = members[0].kind

    def predict(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        total = self.members[0].predict(X)
        for member in self.members[1:]:
            total = total + member.predict(X)
        return total / len(self.members)


def mean_scorer(members: list[Scorer]) -> Scorer:
    """One scorer for ``members``: the only one itself, else their :class:`MeanScorer`."""
    return members[0] if len(members) == 1 else MeanScorer(members)


def _lleaves() -> Any | None:
    try:
        import lleaves
    except ImportError:
        return None
    return lleaves


def cache_key(model_file: Path) -> str:
    """Hash of what the machine code depends on: the model text, the compiler, the CPU."""
    import llvmlite
    import llvmlite.binding as llvm

    lleaves = _lleaves()
    llvm.initialize_native_target()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:
        features = ""
    h = hashlib.sha256(Path(model_file).read_bytes())
    for part in (
        getattr(lleaves, "__version__", "?"),
        llvmlite.__version__,
        llvm.get_process_triple(),
        llvm.get_host_cpu_name(),
        features,
    ):
        h.update(b"\0" + str(part).encode())
    return h.hexdigest()[:16]


def cache_path(model_file: Path) -> Path:
    """Where the compiled ``model_file`` is cached (next to it)."""
    model_file = Path(model_file)
    return model_file.with_name(f"{model_file.stem}.{cache_key(model_file)}{CACHE_SUFFIX}")


def _vouched(target: Path) -> bool:
    """Whether ``target`` may be read or written: no manifest in its directory, or the
    manifest lists it (its checksum is then verified with the version)."""
    manifest = target.parent / "manifest.json"
    if not manifest.exists():
        return True
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(files, dict) and target.name in files


def compile_model(model_file: Path, *, cache: bool = True) -> CompiledScorer | None:
    """The LightGBM text model ``model_file`` compiled with lleaves; None without lleaves.

    With ``cache`` the machine code is read from / written to :func:`cache_path` (written
    under a temporary name, then renamed); an unwritable directory compiles in memory.
    """
    lleaves = _lleaves()
    if lleaves is None:
        return None
    model_file = Path(model_file)
    model = lleaves.Model(model_file=str(model_file))
    t0 = time.perf_counter()
    target = cache_path(model_file) if cache else None
    if target is not None and not _vouched(target):
        _log.info(
            "%s: the store's manifest lists no compiled model for this machine; compiling in "
            "memory",
            model_file,
        )
        target = None
    if target is not None and target.is_file():
        model.compile(cache=str(target))
        _log.debug("%s: compiled model loaded from %s", model_file, target.name)
        return CompiledScorer(model, model.num_feature())
    tmp = None
    if target is not None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.touch()
            tmp.unlink()
        except OSError as exc:
            _log.info(
                "%s: cannot cache the compiled model here (%s); compiling in memory",
                model_file,
                exc,
            )
            tmp = None
    model.compile(cache=str(tmp) if tmp is not None else None)
    if tmp is not None and target is not None:
        try:
            os.replace(tmp, target)
        except OSError as exc:  # the model is compiled; only the cache is lost
            _log.info("%s: could not keep the compiled model (%s)", model_file, exc)
            tmp.unlink(missing_ok=True)
    _log.info(
        "%s: compiled with lleaves (%d trees) in %.1f s",
        model_file,
        model.num_trees(),
        time.perf_counter() - t0,
    )
    return CompiledScorer(model, model.num_feature())


def scorer(booster: Any, model_file: Path | None, *, compiled: bool = True) -> Scorer:
    """The fastest scorer available for ``booster`` (saved as ``model_file``).

    The lleaves-compiled model when ``compiled``, lleaves is installed and ``model_file`` is
    given; else LightGBM's ``predict``, and the log says why.
    """
    if compiled and model_file is not None:
        fast = compile_model(model_file)
        if fast is not None:
            return fast
        _log.info(
            "lleaves is not installed: the ranker scores with LightGBM's predict "
            "(pip install 'recset[fast]' for the compiled model)"
        )
    return BoosterScorer(booster)
