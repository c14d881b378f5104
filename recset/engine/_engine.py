"""The :class:`Engine` facade.

The engine is a facade over a pipeline of stages (:mod:`recset.pipeline`): the recall mix
with its fallback fill, the LightGBM ranker, the personalized re-rank, type-transition
diversification and the explore share, in the order ``[pipeline] stages`` gives, plus any
stage a host adds with :meth:`Engine.with_stage`. It maps external ids to dense ids at its
boundary, runs the stages, and persists every fitted part as one engine version.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from recset.config import Config, config_from_dict
from recset.data import Dataset, IdMap, catalog_frame
from recset.engine._persist import load_parts, save_engine, write_engine
from recset.engine._results import Reason, Recommendation, merge_basket, row_recommendations
from recset.errors import ConfigError, ParameterTypeError
from recset.pipeline import Candidates, Request, Stage, get_stage, insert_position
from recset.ranking import USER_HISTORY, DiscoverStage, Ranker
from recset.recall import Mixer, RecallBase, check_category_keys

if TYPE_CHECKING:
    from recset.personalization import Personalizer, TypeTransition
    from recset.storage import ArtifactRecord, ReleaseRecord

_log = logging.getLogger(__name__)

Mode = Literal["complete", "discover"]
MODES: tuple[str, ...] = ("complete", "discover")

MAX_K = 10_000
"""The longest list a request may ask for (the longest list a build precomputes, too)."""

MAX_SEEDS_PER_RUN = 4096
"""Seeds run through the pipeline at once; larger batches go in slices (bounded memory)."""


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ParameterTypeError(
            f"The 'k' parameter must be an int in [1, {MAX_K}]. Got {k!r} "
            f"({_type_name(k)}) instead."
        )
    if not 1 <= k <= MAX_K:
        raise ConfigError(f"The 'k' parameter must be an int in [1, {MAX_K}]. Got {k!r} instead.")
    return int(k)


def _check_at(at: object) -> int | None:
    """``at`` as whole epoch seconds (None stays None: now)."""
    if at is None:
        return None
    if isinstance(at, bool) or not isinstance(at, int | float | np.integer | np.floating):
        raise ParameterTypeError(
            f"The 'at' parameter must be a time in epoch seconds (int or float) or None. "
            f"Got {at!r} ({_type_name(at)}) instead."
        )
    if not np.isfinite(at) or not 0 <= at < 2**53:
        raise ConfigError(
            f"The 'at' parameter must be a time in epoch seconds in [0, 2**53). Got {at!r} instead."
        )
    return int(at)


def _check_id(value: object, name: str, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        what = "an item id (str)" if not optional else "a user id (str) or None"
        raise ParameterTypeError(
            f"The {name!r} parameter must be {what}; ids are strings (pass str(x) for a number). "
            f"Got {value!r} ({_type_name(value)}) instead."
        )


def _check_ids(values: object, name: str, *, optional: bool = False) -> list[Any]:
    """``values`` as a list of ids; a bare string (an iterable of characters) is refused."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ParameterTypeError(
            f"The {name!r} parameter must be a collection of ids (a list of str), not a single "
            f"{_type_name(values)}. Got {values!r} instead."
        )
    out = list(values)
    for v in out:
        _check_id(v, f"{name}[...]", optional=optional)
    return out


class Engine:
    """Complementary-product recommender: a pipeline of stages over fitted parts.

    Build it from a :class:`~recset.data.Dataset` with :meth:`build` (which fits every source
    and precomputes the candidate list of every catalog item), persist it with :meth:`save`
    and bring it back in a host process with :meth:`load`. Serve with :meth:`recommend`,
    :meth:`recommend_batch` and :meth:`recommend_basket`, on external ids.

    Examples
    --------
    >>> from recset.data.synthetic import SyntheticConfig, generate
    >>> from recset.data import Dataset
    >>> syn = generate(SyntheticConfig(n_items=300, seed=1))
    >>> engine = Engine.build(Dataset.from_frames(syn.catalog, syn.events))
    >>> recs = engine.recommend(syn.catalog.item_id[0], k=3)
    >>> len(recs)
    3
    """

    def __init__(
        self,
        config: Config,
        items: IdMap,
        mixer: Mixer,
        *,
        ranker: Ranker | None = None,
        personalizer: Personalizer | None = None,
        type_transition: TypeTransition | None = None,
    ) -> None:
        if mixer.n_items != len(items):
            raise ConfigError(
                f"the mixer serves {mixer.n_items} items, the item map holds {len(items)}"
            )
        self.config = config
        self.items = items
        self.mixer = mixer
        self._ranker: Ranker | None = None
        self._personalizer: Personalizer | None = None
        self._type_transition: TypeTransition | None = None
        self._host_stages: list[tuple[str | None, Stage]] = []
        self.version: ReleaseRecord | None = None
        """The release this engine was loaded from (:meth:`load`); None for an engine
        built in process. ``engine.version.id`` is the release id, ``.pins`` the versions."""
        self._set(ranker, personalizer, type_transition)

    def __repr__(self) -> str:
        return f"Engine(items={len(self.items)}, stages={[s.name for s in self.stages]})"

    # -- the fitted parts and the stage list -----------------------------------------
    @property
    def source_names(self) -> tuple[str, ...]:
        """The recall sources of every mix (the names along the reasons' source axis)."""
        return self.mixer.source_order

    @property
    def ranker(self) -> Ranker | None:
        return self._ranker

    @property
    def personalizer(self) -> Personalizer | None:
        return self._personalizer

    @property
    def diversifier(self) -> TypeTransition | None:
        return self._type_transition

    @property
    def users(self) -> IdMap | None:
        """The user map of the personal stages (the ranker's, else the personalizer's)."""
        if self._ranker is not None:
            return self._ranker.users
        return self._personalizer.users if self._personalizer is not None else None

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stages a request runs through, in order."""
        return self._stages

    def _set(
        self,
        ranker: Ranker | None,
        personalizer: Personalizer | None,
        type_transition: TypeTransition | None,
    ) -> None:
        """Check the fitted parts against this engine and rebuild the stage list."""
        if ranker is not None:
            own = tuple(s for s in ranker.features.sources if s != USER_HISTORY)
            if own != self.source_names:
                raise ConfigError(
                    f"the ranker reads sources {list(ranker.features.sources)}, this engine "
                    f"mixes {list(self.source_names)}; retrain it with `recset train-ranker`"
                )
        if personalizer is not None:
            n_model = personalizer.model.n_items_
            if n_model != len(self.items):
                raise ConfigError(
                    f"the personalizer was trained on {n_model} items, this engine serves "
                    f"{len(self.items)}; retrain it with `recset train-neural`"
                )
            if ranker is not None and personalizer.users != ranker.users:
                raise ConfigError(
                    "the personalizer was trained on other users than the ranker; train both "
                    "on one dataset (`recset train-ranker`, then `recset train-neural`)"
                )
        self._ranker = ranker
        self._personalizer = personalizer
        self._type_transition = type_transition
        parts = {
            "config": self.config,
            "mixer": self.mixer,
            "ranker": ranker,
            "personalizer": personalizer,
            "type_transition": type_transition,
        }
        names = self.config.pipeline.stages
        stages: list[Stage] = []
        for name in names:
            stage = get_stage(name).create(parts)
            if stage is not None:
                stages.append(stage)
        for after, stage in self._host_stages:
            stages.insert(insert_position(stages, names, after), stage)
        self._stages = tuple(stages)

    def _copy(self) -> Engine:
        new = copy.copy(self)
        new._host_stages = list(self._host_stages)
        return new

    def with_ranker(self, ranker: Ranker | None) -> Engine:
        """A copy of this engine (same sources and lists) ranked by ``ranker`` (None: off).

        Raises ``ConfigError`` when the ranker reads other sources than this engine mixes.
        """
        new = self._copy()
        new._set(ranker, self._personalizer, self._type_transition)
        return new

    def with_stages(
        self,
        *,
        personalizer: Personalizer | None = None,
        diversifier: TypeTransition | None = None,
    ) -> Engine:
        """A copy of this engine with the neural stages set (None: stage off)."""
        new = self._copy()
        new._set(self._ranker, personalizer, diversifier)
        return new

    def with_stage(self, stage: Stage, *, after: str | None = None) -> Engine:
        """A copy of this engine that also runs ``stage`` (a host's business rules, say).

        ``after`` names the stage it follows (``"ranker"``...; a configured stage that is not
        active places it after the last active stage before that one); ``None``: last.
        """
        if not isinstance(stage, Stage):
            raise ConfigError(
                f"The 'stage' parameter must be a recset.pipeline.Stage. "
                f"Got {type(stage).__name__} instead."
            )
        known = [s.name for s in self._stages] + list(self.config.pipeline.stages)
        if after is not None and after not in known:
            raise ConfigError(
                f"The 'after' parameter names no stage of this engine: {after!r}; "
                f"allowed values: {sorted(set(known))}"
            )
        new = self._copy()
        new._host_stages.append((after, stage))
        new._set(self._ranker, self._personalizer, self._type_transition)
        return new

    def for_mode(self, mode: Mode) -> Engine:
        """The engine serving ``mode``: this one for ``"complete"``; for ``"discover"`` a copy
        whose lists hold only items the user never bought, ranked by the ranker's discovery
        model (``ConfigError`` when the ranker has none)."""
        if mode == "complete":
            return self
        if mode != "discover":
            raise ConfigError(
                f"The 'mode' parameter must be one of {list(MODES)}. Got {mode!r} instead."
            )
        if self._ranker is None or self._ranker.discover_booster is None:
            raise ConfigError(
                "discover mode needs a ranker with a discovery model: train it with "
                "`[ranker] discover = true` (`recset train-ranker`)"
            )
        new = self._copy()
        new._stages = (self._stages[0], DiscoverStage(self._ranker, self.mixer.available))
        return new

    def variant(self, sources: Iterable[str]) -> Engine:
        """The same fitted engine serving only ``sources`` of every mix, computed live, with
        no ranker or neural stages (for ablations: nothing is refitted)."""
        return Engine(self.config, self.items, self.mixer.variant(sources))

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        dataset: Dataset,
        config: Config | None = None,
        *,
        precompute: bool = True,
        show_progress: bool = False,
        allow_unknown_categories: bool = False,
        prefitted: Mapping[str, RecallBase] | None = None,
    ) -> Engine:
        """Fit every configured source on ``dataset`` and precompute every item's list.

        Sources in ``prefitted`` (by name, fitted on ``dataset`` elsewhere, e.g. on Spark by
        ``recset.spark.fit_behaviour_sources``) are used as they are.

        A ``[categories]`` key that matches no category of ``dataset`` is a ``ConfigError``
        (a warning with ``allow_unknown_categories``).
        """
        if not isinstance(dataset, Dataset):
            raise ParameterTypeError(
                "The 'dataset' parameter must be a recset.data.Dataset (load_dataset(path) reads "
                f"a directory). Got {dataset!r} ({_type_name(dataset)}) instead."
            )
        if config is not None and not isinstance(config, Config):
            raise ParameterTypeError(
                "The 'config' parameter must be a recset.config.Config (load_config(path) or "
                f"config_from_dict(dict)). Got {_type_name(config)} instead."
            )
        config = config or config_from_dict({})
        check_category_keys(config, dataset, allow_unknown=allow_unknown_categories)
        mixer = Mixer.fit(dataset, config, show_progress=show_progress, prefitted=prefitted)
        if precompute:
            mixer.precompute(config.build.candidates_per_seed, show_progress=show_progress)
        engine = cls(config, dataset.items, mixer)
        _log.info("built %r", engine)
        return engine

    # -- serving ----------------------------------------------------------------------
    def run_pipeline(self, request: Request) -> Candidates:
        """Run every stage for a batch of dense-id requests; the top ``request.k`` of each.

        This is the dense-id interface for evaluation tools and stage authors; hosts call
        :meth:`recommend_batch`. Served scores never rise along a row; unknown seeds (-1)
        get the cold-start path, unknown users (-1) are served like anonymous ones.
        """
        stages = self._stages
        width = request.k
        for stage in reversed(stages[1:]):
            width = stage.width(width)
        out = Candidates.empty(len(request.seeds), width)
        for stage in stages:
            out = stage.run(request, out)
        return out.resized(request.k)

    def _dense_users(self, users: Sequence[str | None] | None, n: int) -> NDArray[np.int32]:
        if users is not None and len(users) != n:
            raise ConfigError(
                f"The 'users' parameter must have one entry per seed ({n}). "
                f"Got {len(users)} instead."
            )
        user_map = self.users
        if users is None or user_map is None:
            return np.full(n, -1, dtype=np.int32)
        return np.array(
            [user_map.index_one(u) if u is not None else -1 for u in users], dtype=np.int32
        )

    def recommend_batch(
        self,
        seed_ids: Sequence[str],
        users: Sequence[str | None] | None = None,
        k: int = 10,
        exclude: Sequence[Iterable[str]] | None = None,
        mode: Mode = "complete",
        at: float | None = None,
    ) -> list[list[Recommendation]]:
        """Up to ``k`` complements of each seed (external ids), best first, with reasons.

        Parameters
        ----------
        seed_ids : sequence of str
            Seed item ids; an unknown seed never raises: it gets the cold-start path.
        users : sequence of str or None, optional
            One user id per seed (None: anonymous); feeds the personal stages. An unknown
            user is served like an anonymous one.
        k : int
        exclude : sequence of iterables of str, optional
            One collection of item ids per seed that its list must not hold.
        mode : {"complete", "discover"}
            ``"discover"``: only complements the user never bought (:meth:`for_mode`).
        at : float, optional
            When the request is asked (epoch seconds; default: now). Only time-dependent
            ranker features read it (``cand_promo``: the promotion calendar at that time).
        """
        k = _check_k(k)
        when = _check_at(at)
        engine = self.for_mode(mode)
        seed_list = _check_ids(seed_ids, "seed_ids")
        n = len(seed_list)
        if users is not None:
            users = _check_ids(users, "users", optional=True)
        if exclude is not None:
            if isinstance(exclude, str | bytes) or not isinstance(exclude, Iterable):
                raise ParameterTypeError(
                    "The 'exclude' parameter must be one collection of item ids per seed. "
                    f"Got {exclude!r} ({_type_name(exclude)}) instead."
                )
            exclude = list(exclude)
            if len(exclude) != n:
                raise ConfigError(
                    f"The 'exclude' parameter must have one collection per seed ({n}). "
                    f"Got {len(exclude)} instead."
                )
        ex = [self._dense_exclude(exclude[i] if exclude is not None else ()) for i in range(n)]
        dense_users = self._dense_users(users, n)
        out: list[list[Recommendation]] = []
        for lo in range(0, n, MAX_SEEDS_PER_RUN):
            sl = slice(lo, lo + MAX_SEEDS_PER_RUN)
            part = ex[sl]
            extra = min(max((len(e) for e in part), default=0), len(self.items))
            seeds = self.items.index(seed_list[sl])
            batch = engine.run_pipeline(Request.of(seeds, dense_users[sl], k + extra, when))
            out += [row_recommendations(batch, i, k, e, self.items) for i, e in enumerate(part)]
        return out

    def _dense_exclude(self, ids: Iterable[str]) -> NDArray[np.int32]:
        ids = _check_ids(ids, "exclude")
        idx = self.items.index(ids) if ids else np.zeros(0, np.int32)
        return np.unique(idx[idx >= 0])

    def recommend(
        self,
        seed_item: str,
        user: str | None = None,
        k: int = 10,
        exclude: Iterable[str] = (),
        mode: Mode = "complete",
        at: float | None = None,
    ) -> list[Recommendation]:
        """Up to ``k`` complements of ``seed_item`` (external id), best first.

        An unknown seed never raises: it gets the cold-start path (the fallback source).
        ``user`` (external id) feeds the personal stages; an unknown user is served like an
        anonymous one. Items in ``exclude`` (external ids) are never returned. ``mode``
        ``"discover"`` serves only complements the user never bought (:meth:`for_mode`).
        ``at`` is when the request is asked (epoch seconds; default now), read only by
        time-dependent ranker features (the promotion calendar).

        Raises ``TypeError`` (:class:`~recset.errors.ParameterTypeError`) for a seed or user
        that is not a string, an ``exclude`` that is a bare string, and a ``k`` that is not
        an int; ``ConfigError`` for ``k`` outside [1, :data:`MAX_K`].
        """
        k = _check_k(k)
        _check_id(seed_item, "seed_item")
        _check_id(user, "user", optional=True)
        exclude = _check_ids(exclude, "exclude")
        _check_at(at)
        # ``at`` only when given: a subclass's recommend_batch may predate it
        when: dict[str, Any] = {} if at is None else {"at": at}
        if mode != "complete":
            return self.recommend_batch([seed_item], [user], k, [exclude], mode=mode, **when)[0]
        if len(self._stages) == 1:
            fast = self._recommend_precomputed(
                self.items.index_one(seed_item), k, self._dense_exclude(exclude)
            )
            if fast is not None:
                return fast
        return self.recommend_batch([seed_item], [user], k, [exclude], **when)[0]

    def recommend_basket(
        self,
        item_ids: Sequence[str],
        user: str | None = None,
        k: int = 10,
        mode: Mode = "complete",
        at: float | None = None,
    ) -> list[Recommendation]:
        """One list of ``k`` complements for a cart of several items; none of the cart's.

        Every known cart item is a seed; an item's basket score is the sum over the seeds'
        lists of ``1 / (rrf_k + rank + 1)`` (``rrf_k`` of the default mix), so items that
        complete several cart items rise. Its reasons are those of its best-ranked
        occurrence. A cart of unknown items gets the cold-start list. ``mode="discover"``
        keeps only items the user never bought. ``at``: as in :meth:`recommend`.
        """
        k = _check_k(k)
        _check_id(user, "user", optional=True)
        cart = list(dict.fromkeys(_check_ids(item_ids, "item_ids")))
        if not cart:
            raise ConfigError("The 'item_ids' parameter must hold at least one item id.")
        known = [i for i in cart if self.items.index_one(i) >= 0] or cart[:1]
        width = k + len(cart)
        lists = self.recommend_batch(
            known,
            [user] * len(known),
            width,
            [cart] * len(known),
            mode=mode,
            **({} if at is None else {"at": at}),
        )
        return merge_basket(lists, self.config.mix.rrf_k, k)

    def _recommend_precomputed(
        self, seed: int, k: int, exclude: NDArray[np.int32]
    ) -> list[Recommendation] | None:
        """The hot path: a precomputed row with at least ``k`` servable items, else None."""
        row = self.mixer.precomputed(seed, k, exclude)
        if row is None:
            return None
        names, ids = self.source_names, self.items.values
        return [
            Recommendation(
                str(ids[item]), score, tuple(Reason(names[s_], v, r) for s_, v, r in why)
            )
            for item, score, why in row
        ]

    def explain(self, seed_item: str, k: int = 20) -> dict[str, Any]:
        """The seed's mix (category override or default) and its candidates with all reasons."""
        _check_id(seed_item, "seed_item")
        k = _check_k(k)
        seed = self.items.index_one(seed_item)
        mix_index = int(self.mixer.mix_of(np.array([seed]))[0])
        mix_key = list(self.config.mixes())[mix_index]
        mix = self.mixer.mixes[mix_index]
        recs = self.recommend(seed_item, k=k)
        lists = self.mixer.lists
        return {
            "seed": seed_item,
            "known": seed >= 0,
            "precomputed": lists is not None and 0 <= seed < lists.n_seeds,
            "stages": [s.name for s in self._stages],
            "mix": {"category_override": mix_key or None, **mix.model_dump(mode="json")},
            "candidates": [
                {"item_id": r.item_id, "score": r.score, "reasons": [vars(x) for x in r.reasons]}
                for r in recs
            ],
        }

    def iter_lists(
        self, *, show_progress: bool = False
    ) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every precomputed list as ``(seed item id, [{item_id, score, sources}])`` rows."""
        if self.mixer.lists is None:
            self.mixer.precompute(self.config.build.candidates_per_seed)
        names, ids = self.source_names, self.items.values
        for seed, row in self.mixer.iter_rows(show_progress=show_progress):
            yield (
                str(ids[seed]),
                [
                    {
                        "item_id": str(ids[item]),
                        "score": score,
                        "sources": {names[s_]: {"score": v, "rank": r} for s_, v, r in why},
                    }
                    for item, score, why in row
                ],
            )

    # -- persistence ------------------------------------------------------------------
    def save(
        self,
        target: str | os.PathLike[str],
        *,
        artifact_dir: str | os.PathLike[str] | None = None,
        dataset: Dataset | None = None,
        metrics: dict[str, Any] | None = None,
        activate: bool = True,
    ) -> ArtifactRecord:
        """Write the engine to a store (a directory path or a SQLAlchemy URL).

        The fitted sources and precomputed lists go to a new version of the ``engine``
        artifact (written to a temporary directory, then renamed). With ``activate`` it is
        released as ``recset build`` releases it: a staged release pins it with the ranker and
        neural stages of the active release, that release is loaded as a service would load
        it, and only when it loads is it activated (when ``dataset`` is given, its catalog
        replaces the store's catalog in the same transaction). A release that cannot load
        (say, after ``recset train-ranker`` on other sources) raises
        :class:`~recset.errors.StorageError` naming why; the engine version and that release
        stay staged and the previous release stays active. With ``activate=False`` the
        version is only staged (``recset build`` stages, checks, then activates it itself).
        """

        def load_release(release: int) -> None:
            Engine.load(target, artifact_dir=artifact_dir, release=release)

        return save_engine(
            target,
            lambda d: write_engine(d, self.config, self.items, self.mixer),
            self.config,
            len(self.items),
            artifact_dir=artifact_dir,
            catalog=catalog_frame(dataset) if dataset is not None else None,
            metrics=metrics,
            activate=activate,
            load_release=load_release,
        )

    @classmethod
    def load(
        cls,
        target: str | os.PathLike[str],
        *,
        artifact_dir: str | os.PathLike[str] | None = None,
        version: int | None = None,
        device: str = "auto",
        neural: bool = True,
        release: int | None = None,
    ) -> Engine:
        """Load the active release (or ``release``, or the release pinning engine
        ``version``) from a store.

        A release pins an engine version and the ranker and neural stage versions served
        with it (``recset versions``); only what it pins is attached (neural stages also
        only when ``neural``). ``engine.version`` is the release loaded. ``device`` is where
        the neural stages run. Item availability comes from the store's catalog when it holds
        one, so marking an item unavailable there takes effect at the next load without a
        rebuild. The precomputed lists are memory-mapped.
        """
        p = load_parts(
            target,
            artifact_dir=artifact_dir,
            version=version,
            device=device,
            neural=neural,
            release=release,
        )
        engine = cls(
            p.config,
            p.items,
            p.mixer,
            ranker=p.ranker,
            personalizer=p.personalizer,
            type_transition=p.type_transition,
        )
        engine.version = p.release
        return engine
