"""The :class:`RecallBase` abstract base of every recall source, and the source registry."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from recset.data import Dataset
from recset.errors import ConfigError, NotFittedError
from recset.pipeline import Candidates, Registry
from recset.signals import Signals
from recset.storage import State, read_state, write_state

_log = logging.getLogger(__name__)


def compact(
    item: NDArray[np.int32], score: NDArray[np.float32], keep: NDArray[np.bool_], n: int
) -> Candidates:
    """Drop entries where ``keep`` is false, shift the rest left, and cut to ``n`` columns."""
    order = np.argsort(~keep, axis=1, kind="stable")[:, :n]
    rows = np.arange(item.shape[0])[:, None]
    m = order.shape[1]
    out_item = np.full((item.shape[0], n), -1, dtype=np.int32)
    out_score = np.full((item.shape[0], n), -np.inf, dtype=np.float32)
    out_item[:, :m] = np.where(keep, item, -1)[rows, order]
    out_score[:, :m] = np.where(keep, score, -np.inf)[rows, order]
    return Candidates(out_item, out_score)


class SourceConfig(BaseModel):
    """Base of every recall source's config: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


Basis = Literal["behaviour", "content", "popularity", "category"]
_FORMAT_VERSION = 1


class RecallBase(ABC):
    """A pluggable candidate source (or filter): the abstract base every recall set derives from.

    ``fit`` learns from a :class:`Dataset` (reading shared :class:`~recset.signals.Signals`)
    and returns ``self``; ``recall_many`` answers for a batch of dense seed ids (``-1`` for a
    seed unknown to the dataset) and never raises for a seed it cannot answer: that row is
    simply padded. A filter also implements ``keep``.

    A source states what it is as class attributes, so nothing else keeps lists of types:

    - ``is_filter``: implements ``keep(seeds, items)`` and may be named in a mix's filters;
    - ``basis``: ``"behaviour"`` (counts of what people did together: counts towards a
      backtest's behavioural coverage), ``"content"`` (catalog attributes), ``"popularity"``
      or ``"category"``;
    - ``signals``: the :class:`~recset.signals.Signals` it reads;
    - ``requires``: the types of other fitted sources it reads (found in ``fitted``); a
      source whose needs depend on its config overrides :meth:`requirements`.

    Subclasses set ``Config``, implement ``fit`` (setting attributes that end in ``_``) and
    ``recall_many``, and list their fitted array attributes in ``_state`` (saved as one
    versioned artifact state by :meth:`save`).
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    is_filter: ClassVar[bool] = False
    basis: ClassVar[Basis] = "content"
    signals: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[SourceConfig]] = SourceConfig
    _state: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: SourceConfig | None = None) -> None:
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise ConfigError(
                f"The 'config' parameter of {type(self).__name__} must be a "
                f"{self.Config.__name__}. Got {type(config).__name__} instead."
            )
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @classmethod
    def requirements(cls, config: SourceConfig) -> tuple[str, ...]:
        """Types of the other sources this one reads when configured with ``config``."""
        return cls.requires

    @abstractmethod
    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        """Learn from ``dataset``; ``fitted`` holds the sources of :meth:`requirements`."""

    @abstractmethod
    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """Up to ``n`` candidates per seed (B,), best first; padded rows for unknown seeds."""

    def keep(self, seeds: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        """(B, N) mask of the ``items`` (B, N) this filter lets through for ``seeds`` (B,)."""
        raise ConfigError(f"recall source {self.name!r} is not a filter (is_filter is false)")

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
            raise ConfigError("the 'signals' parameter was computed on another dataset")
        return signals

    def _dependency(self, fitted: Mapping[str, RecallBase] | None, kind: str) -> RecallBase | None:
        """The fitted source of type ``kind`` among ``fitted`` (by type name), if any."""
        for src in (fitted or {}).values():
            if getattr(src, "name", None) == kind:
                return src
        return None

    def recall(self, seed: int, n: int) -> Candidates:
        return self.recall_many(np.array([seed], dtype=np.int32), n)

    def save(self, directory: Path) -> None:
        """Write the config and the fitted arrays (one versioned artifact state)."""
        self._check_fitted()
        write_state(
            directory,
            "recall_set",
            _FORMAT_VERSION,
            meta={"name": self.name, "config": self.config.model_dump(mode="json")},
            arrays={a: getattr(self, a) for a in self._state},
        )

    @classmethod
    def load(cls, directory: Path) -> Self:
        state = read_state(directory, "recall_set", _FORMAT_VERSION)
        if state.meta.get("name") != cls.name:
            raise ConfigError(
                f"{directory}: holds recall set {state.meta.get('name')!r}, not {cls.name!r}"
            )
        obj = cls(cls.Config.model_validate(state.meta["config"]))
        state = State(state.meta, cls._upgrade_state(dict(state.arrays)))
        for a in cls._state:
            setattr(obj, a, state.array(a, directory))
        return obj

    @classmethod
    def _upgrade_state(cls, arrays: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """The saved ``arrays`` in today's layout: a source whose arrays changed shape
        converts an older version's here, so that its saved engines still load."""
        return arrays


def _check_filter(name: str, cls: type) -> None:
    if getattr(cls, "is_filter", False) and cls.keep is RecallBase.keep:  # type: ignore[attr-defined]
        raise ConfigError(f"recall source {name!r} says is_filter but does not implement keep")


RECALL_SETS: Registry[type[RecallBase]] = Registry(
    "recall source", "recset.recall_sets", check=_check_filter
)
"""The registered recall sources (built-in and the ``recset.recall_sets`` plug-ins)."""

register_recall = RECALL_SETS.register
registered_recall_sets = RECALL_SETS.all
get_recall = RECALL_SETS.get
