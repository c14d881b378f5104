"""The RecallSet protocol, the columnar :class:`Candidates`, and the source registry."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from recset.data import Dataset
from recset.errors import ConfigError, NotFittedError
from recset.signals import Signals

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidates:
    """Candidates for a batch of seeds, padded to a common width.

    Attributes
    ----------
    item : ndarray of int32, shape (n_seeds, n)
        Dense item ids, best first, padded with ``-1``.
    score : ndarray of float32, shape (n_seeds, n)
        The source's score for each candidate, padded with ``-inf``.

    The rank of a candidate is its column (0-based).
    """

    item: NDArray[np.int32]
    score: NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.item.shape != self.score.shape or self.item.ndim != 2:
            raise ValueError(
                "Candidates.item and .score must be 2-D arrays of one shape. "
                f"Got {self.item.shape} and {self.score.shape} instead."
            )

    @classmethod
    def empty(cls, n_seeds: int, n: int) -> Candidates:
        return cls(
            item=np.full((n_seeds, n), -1, dtype=np.int32),
            score=np.full((n_seeds, n), -np.inf, dtype=np.float32),
        )

    @property
    def n_seeds(self) -> int:
        return int(self.item.shape[0])

    def row(self, i: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """The unpadded candidates and scores of seed row ``i``."""
        valid = self.item[i] >= 0
        return self.item[i][valid], self.score[i][valid]

    def counts(self) -> NDArray[np.int64]:
        """Number of real (unpadded) candidates per seed, shape (n_seeds,)."""
        return (self.item >= 0).sum(axis=1)


def compact(
    item: NDArray[np.int32], score: NDArray[np.float32], keep: NDArray[np.bool_], n: int
) -> Candidates:
    """Drop entries where ``keep`` is false, shift the rest left, and cut to ``n`` columns."""
    order = np.argsort(~keep, axis=1, kind="stable")
    item = np.take_along_axis(np.where(keep, item, -1), order, axis=1)[:, :n]
    score = np.take_along_axis(np.where(keep, score, -np.inf), order, axis=1)[:, :n]
    if item.shape[1] < n:
        pad = n - item.shape[1]
        item = np.pad(item, ((0, 0), (0, pad)), constant_values=-1)
        score = np.pad(score, ((0, 0), (0, pad)), constant_values=-np.inf)
    return Candidates(item.astype(np.int32), score.astype(np.float32))


class SourceConfig(BaseModel):
    """Base of every recall source's config: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@runtime_checkable
class RecallSet(Protocol):
    """A pluggable candidate source.

    ``fit`` learns from a :class:`Dataset` (reading shared :class:`~recset.signals.Signals`)
    and returns ``self``; ``recall_many`` answers for a batch of dense seed ids (``-1`` for a
    seed unknown to the dataset) and never raises for a seed it cannot answer: that row is
    simply padded. A source that needs another fitted source (e.g. ``popular`` scoped by
    ``related_categories``) names its type in ``requires`` and finds it in ``fitted``.
    """

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]
    config: SourceConfig

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallSet] | None = None,
    ) -> Self: ...

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates: ...

    @staticmethod
    def _signals(dataset: Dataset, signals: Signals | None) -> Signals:
        if signals is None:
            return Signals(dataset)
        if signals.dataset is not dataset:
            raise ValueError("the 'signals' parameter was computed on another dataset")
        return signals

    def _dependency(self, fitted: Mapping[str, RecallSet] | None, kind: str) -> RecallSet | None:
        """The fitted source of type ``kind`` among ``fitted`` (by type name), if any."""
        for src in (fitted or {}).values():
            if getattr(src, "name", None) == kind:
                return src
        return None

    def recall(self, seed: int, n: int) -> Candidates: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...


class RecallBase:
    """Shared plumbing: config handling, the fitted check, save/load of arrays as ``.npz``.

    Subclasses set ``name`` and ``Config``, implement ``fit`` (setting attributes that end in
    ``_``) and ``recall_many``, and list their fitted array attributes in ``_state``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[SourceConfig]] = SourceConfig
    _state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: SourceConfig | None = None) -> None:
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise TypeError(
                f"The 'config' parameter of {type(self).__name__} must be a "
                f"{self.Config.__name__}. Got {type(config).__name__} instead."
            )
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def _check_fitted(self) -> None:
        if not self._state or not all(hasattr(self, a) for a in self._state):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(dataset) first."
            )

    @staticmethod
    def _signals(dataset: Dataset, signals: Signals | None) -> Signals:
        if signals is None:
            return Signals(dataset)
        if signals.dataset is not dataset:
            raise ValueError("the 'signals' parameter was computed on another dataset")
        return signals

    def _dependency(self, fitted: Mapping[str, RecallSet] | None, kind: str) -> RecallSet | None:
        """The fitted source of type ``kind`` among ``fitted`` (by type name), if any."""
        for src in (fitted or {}).values():
            if getattr(src, "name", None) == kind:
                return src
        return None

    def recall(self, seed: int, n: int) -> Candidates:
        return self.recall_many(np.array([seed], dtype=np.int32), n)  # type: ignore[attr-defined]

    def save(self, directory: Path) -> None:
        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / "state.npz",
            allow_pickle=False,
            **{a: getattr(self, a) for a in self._state},
        )
        (directory / "config.json").write_text(
            json.dumps({"name": self.name, "config": self.config.model_dump(mode="json")}),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, directory: Path) -> Self:
        meta = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        if meta.get("name") != cls.name:
            raise ConfigError(
                f"{directory}: holds recall set {meta.get('name')!r}, not {cls.name!r}"
            )
        obj = cls(cls.Config.model_validate(meta["config"]))
        with np.load(directory / "state.npz", allow_pickle=False) as z:
            for a in cls._state:
                setattr(obj, a, z[a])
        return obj


_REGISTRY: dict[str, type[RecallBase]] = {}
_T = TypeVar("_T", bound=type[RecallBase])


def register_recall(name: str) -> Callable[[_T], _T]:
    """Class decorator: register a recall set under ``name`` so configs can name it."""

    def deco(cls: _T) -> _T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"recall set {name!r} is already registered by {_REGISTRY[name]}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


_plugins_loaded = False


def _load_plugins() -> None:
    """Import third-party recall sets declared in the ``recset.recall_sets`` entry points."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="recset.recall_sets"):
        try:
            ep.load()
        except Exception:  # a broken plugin must not break recset
            _log.exception("could not load recall-set plugin %s", ep.name)


def registered_recall_sets() -> dict[str, type[RecallBase]]:
    """All registered recall sets by name (built-in and plugins)."""
    _load_plugins()
    return dict(_REGISTRY)


def get_recall(name: str) -> type[RecallBase]:
    """The recall-set class registered as ``name``; ``ConfigError`` lists the known names."""
    known = registered_recall_sets()
    if name not in known:
        raise ConfigError(f"unknown recall source {name!r}; known sources: {sorted(known)}")
    return known[name]


def config_to_json(config: Any) -> str:
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)
