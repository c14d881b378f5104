"""The shapes every serving stage shares: :class:`Candidates`, :class:`Request`, :class:`Stage`.

A recommendation is one pass over an ordered list of stages (recall mix, ranker, personalized
re-rank, type-transition diversification, explore share, and any stage a host adds). Every
stage takes the batch of :class:`Candidates` the stage before it produced and returns one,
on dense ids; the :class:`~recset.Engine` only runs the list and maps ids at its boundary.

Stages are registered by name (:func:`register_stage`), so ``[pipeline] stages = [...]`` in
the config can name them; third-party stages come in through the ``recset.stages`` entry-point
group. A stage class builds itself from the engine's fitted parts with :meth:`Stage.create`
and returns ``None`` when there is nothing to run (no ranker trained, say).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from recset.errors import ConfigError

_log = logging.getLogger(__name__)

__all__ = [
    "STAGES",
    "Candidates",
    "PipelineConfig",
    "Registry",
    "Request",
    "Stage",
    "get_stage",
    "insert_position",
    "register_stage",
    "registered_stages",
]


@dataclass(frozen=True)
class Candidates:
    """Candidates for a batch of seeds, padded to a common width: the one item-list type of
    the whole pipeline, from a recall source's answer to the served list.

    Attributes
    ----------
    item : ndarray of int32, shape (n_seeds, n)
        Dense item ids, best first, padded with ``-1``.
    score : ndarray of float32, shape (n_seeds, n)
        Scores, non-increasing along a row once a stage has ordered it; ``-inf`` padding.
    source_score : ndarray of float32, shape (n_seeds, n, n_sources), optional
        The reasons: each source's score for the candidate, NaN where the source did not
        propose it. ``None`` for a single source's own answer (its rank is the column).
    source_rank : ndarray of int32, shape (n_seeds, n, n_sources), optional
        The candidate's 0-based rank in each source's list, -1 where absent.
    sources : tuple of str
        The source names along the last axis of the reasons.
    """

    item: NDArray[np.int32]
    score: NDArray[np.float32]
    source_score: NDArray[np.float32] | None = None
    source_rank: NDArray[np.int32] | None = None
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.item.shape != self.score.shape or self.item.ndim != 2:
            raise ConfigError(
                "Candidates.item and .score must be 2-D arrays of one shape. "
                f"Got {self.item.shape} and {self.score.shape} instead."
            )
        if (self.source_score is None) != (self.source_rank is None):
            raise ConfigError("Candidates.source_score and .source_rank go together")
        if self.source_score is not None:
            want = (*self.item.shape, len(self.sources))
            if self.source_score.shape != want or self.source_rank.shape != want:  # type: ignore[union-attr]
                raise ConfigError(
                    f"Candidates reasons must have shape {want}. Got "
                    f"{self.source_score.shape} and {self.source_rank.shape} instead."  # type: ignore[union-attr]
                )

    @classmethod
    def empty(cls, n_seeds: int, n: int, sources: tuple[str, ...] | None = None) -> Candidates:
        """All-padding candidates; with ``sources``, with (empty) reasons too."""
        item = np.full((n_seeds, n), -1, dtype=np.int32)
        score = np.full((n_seeds, n), -np.inf, dtype=np.float32)
        if sources is None:
            return cls(item, score)
        s = len(sources)
        return cls(
            item,
            score,
            np.full((n_seeds, n, s), np.nan, np.float32),
            np.full((n_seeds, n, s), -1, np.int32),
            tuple(sources),
        )

    @property
    def n_seeds(self) -> int:
        return int(self.item.shape[0])

    @property
    def width(self) -> int:
        return int(self.item.shape[1])

    @property
    def has_reasons(self) -> bool:
        return self.source_rank is not None

    def row(self, i: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """The unpadded candidates and scores of seed row ``i``."""
        valid = self.item[i] >= 0
        return self.item[i][valid], self.score[i][valid]

    def counts(self) -> NDArray[np.int64]:
        """Number of real (unpadded) candidates per seed, shape (n_seeds,)."""
        return (self.item >= 0).sum(axis=1)

    def n_sources_per_candidate(self) -> NDArray[np.int64]:
        """How many sources proposed each candidate, shape (n_seeds, n)."""
        if self.source_rank is None:
            return (self.item >= 0).astype(np.int64)
        return (self.source_rank >= 0).sum(axis=2)

    def take(
        self, order: NDArray[np.intp], score: NDArray[np.floating] | None = None
    ) -> Candidates:
        """Columns ``order`` (n_seeds, m) of every row, reasons included.

        ``score`` (n_seeds, n), when given, replaces the scores before they are taken.
        """
        sc = self.score if score is None else score
        # advanced indexing (rows, order): the same as take_along_axis, at a fraction of its
        # cost on the 3-D reasons
        rows = np.arange(self.n_seeds)[:, None]
        out = Candidates(self.item[rows, order], sc[rows, order].astype(np.float32))
        if self.source_rank is None:
            return out
        return replace(
            out,
            source_score=self.source_score[rows, order],  # type: ignore[index]
            source_rank=self.source_rank[rows, order],  # type: ignore[index]
            sources=self.sources,
        )

    def resized(self, n: int) -> Candidates:
        """The first ``n`` columns of every row, padded when the rows are shorter."""
        if n <= self.width:
            return self.take(np.broadcast_to(np.arange(n), (self.n_seeds, n)))
        names = self.sources if self.has_reasons else None
        pad = Candidates.empty(self.n_seeds, n - self.width, names)
        cat = lambda a, b: None if a is None else np.concatenate([a, b], axis=1)  # noqa: E731
        return Candidates(
            cat(self.item, pad.item),
            cat(self.score, pad.score),
            cat(self.source_score, pad.source_score),
            cat(self.source_rank, pad.source_rank),
            self.sources,
        )

    def falling(self) -> Candidates:
        """The same list with every score capped by the ones above it (after a reorder)."""
        real = self.item >= 0
        capped = np.minimum.accumulate(np.where(real, self.score, np.inf), axis=1)
        return replace(self, score=np.where(real, capped, -np.inf).astype(np.float32))


@dataclass(frozen=True)
class Request:
    """One batch of recommendation requests on dense ids.

    Attributes
    ----------
    seeds : ndarray of int32, shape (B,)
        Dense seed item ids; -1 for a seed unknown to the engine (cold-start path).
    users : ndarray of int32, shape (B,)
        Dense user ids of the engine's user map; -1 for an anonymous or unknown user.
    k : int
        The length of the list the pipeline serves.
    when : ndarray of int64, shape (B,), optional
        When each request is asked (epoch seconds); ``None``: now. Only time-dependent
        ranker features (the promotion calendar's ``cand_promo``) read it.
    """

    seeds: NDArray[np.int32]
    users: NDArray[np.int32]
    k: int
    when: NDArray[np.int64] | None = None

    @classmethod
    def of(
        cls,
        seeds: NDArray[np.integer],
        users: NDArray[np.integer] | None,
        k: int,
        when: NDArray[np.integer] | float | None = None,
    ) -> Request:
        """A request with checked shapes; ``users=None`` means every user is anonymous;
        ``when`` is one time for every seed or one per seed (``None``: now)."""
        if not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"The 'k' parameter must be an int in [1, inf). Got {k!r} instead.")
        seeds = np.asarray(seeds, dtype=np.int32).ravel()
        if users is None:
            users = np.full(len(seeds), -1, dtype=np.int32)
        users = np.asarray(users, dtype=np.int32).ravel()
        if len(users) != len(seeds):
            raise ConfigError(
                f"The 'users' parameter must have one entry per seed ({len(seeds)}). "
                f"Got {len(users)} instead."
            )
        times = None
        if when is not None:
            times = np.asarray(when, dtype=np.int64).ravel()
            if times.size == 1:
                times = np.full(len(seeds), times[0], dtype=np.int64)
            if len(times) != len(seeds):
                raise ConfigError(
                    f"The 'when' parameter must be one time or one per seed ({len(seeds)}). "
                    f"Got {len(times)} instead."
                )
        return cls(seeds, users, int(k), times)


class Stage(ABC):
    """One step of the serving pipeline: a batch in, a batch out, on dense ids.

    Subclasses set ``name`` with :func:`register_stage`, implement :meth:`run`, and may
    override :meth:`width` (how many candidates they want from the stages before them) and
    :meth:`create` (how the engine builds them from its fitted parts).
    """

    name: ClassVar[str] = ""

    def width(self, k: int) -> int:
        """Candidates this stage wants from upstream to serve ``k`` downstream."""
        return k

    @abstractmethod
    def run(self, request: Request, candidates: Candidates) -> Candidates:
        """Transform the batch: filter, re-score or reorder. Keep rows' scores falling."""

    @classmethod
    def create(cls, parts: Mapping[str, Any]) -> Stage | None:
        """The stage built from the engine's fitted ``parts`` (``None``: nothing to run).

        ``parts`` maps names to the engine's fitted components: ``"mixer"``, ``"ranker"``,
        ``"personalizer"``, ``"type_transition"`` (absent ones are ``None``). The default
        builds the stage with no arguments.
        """
        return cls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_C = TypeVar("_C", bound=type)


class Registry(Generic[_C]):
    """Classes registered by name: recall sources, ranker features and stages each keep one.

    :meth:`register` is a class decorator that sets the class's ``name``; third-party
    classes come in through the entry-point ``group``, imported on first lookup. A name
    registered twice by different classes, or an unknown name, is a ``ConfigError`` (the
    latter lists the known names).

    Parameters
    ----------
    what : str
        What is registered, for messages (``"recall source"``).
    group : str
        The entry-point group of plug-ins.
    check : callable, optional
        ``check(name, cls)`` raising ``ConfigError`` when ``cls`` may not register.
    check_name : callable, optional
        ``check_name(name)`` raising ``ConfigError`` for a name that may not be used.
    """

    def __init__(
        self,
        what: str,
        group: str,
        check: Callable[[str, type], None] | None = None,
        check_name: Callable[[str], None] | None = None,
    ) -> None:
        self.what = what
        self.group = group
        self._check = check
        self._check_name = check_name
        self._classes: dict[str, _C] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[_C], _C]:
        """Class decorator: register the class under ``name``."""
        if self._check_name is not None:
            self._check_name(name)

        def deco(cls: _C) -> _C:
            old = self._classes.get(name)
            if old is not None and old is not cls:
                raise ConfigError(f"{self.what} {name!r} is already registered by {old}")
            if self._check is not None:
                self._check(name, cls)
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return deco

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            try:
                ep.load()
            except Exception:  # a broken plugin must not break recset
                _log.exception("could not load %s plugin %s", self.what, ep.name)

    def all(self) -> dict[str, _C]:
        """Every registered class by name, in registration order (plug-ins loaded first)."""
        self._load_plugins()
        return dict(self._classes)

    def get(self, name: str) -> _C:
        """The class registered as ``name``; ``ConfigError`` lists the known names."""
        known = self.all()
        if name not in known:
            plural = self.what.split()[-1] + "s"
            raise ConfigError(f"unknown {self.what} {name!r}; known {plural}: {sorted(known)}")
        return known[name]

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """Registrations made inside the block are undone when it ends (for tests)."""
        self._load_plugins()
        saved = dict(self._classes)
        try:
            yield
        finally:
            self._classes = saved


STAGES: Registry[type[Stage]] = Registry("stage", "recset.stages")
"""The registered pipeline stages."""

register_stage = STAGES.register
registered_stages = STAGES.all
get_stage = STAGES.get


def insert_position(stages: Sequence[Stage], names: Sequence[str], after: str | None) -> int:
    """Where a stage placed ``after`` a named stage goes among the active ``stages``.

    ``names`` is the configured order; a configured stage that is not active (no model)
    places it after the last active stage configured before that one; ``None``: last.
    """
    if after is None:
        return len(stages)
    active = [s.name for s in stages]
    if after in active:
        return len(active) - active[::-1].index(after)
    before = list(names[: list(names).index(after)]) if after in names else []
    for i in range(len(active) - 1, -1, -1):
        if active[i] in before:
            return i + 1
    return 0


DEFAULT_STAGES = ("recall", "ranker", "personalization", "type_transition", "explore")


class PipelineConfig(BaseModel):
    """The serving pipeline (``[pipeline]`` in TOML).

    Attributes
    ----------
    stages : list of str
        Registered stage names in order. The first must be ``recall`` (the mix and its
        fallback fill). A stage with nothing fitted (no ranker trained, no neural stages)
        is skipped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    stages: tuple[str, ...] = DEFAULT_STAGES
