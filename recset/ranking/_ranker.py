"""The LightGBM lambdarank stage: training data, training, scoring, artifacts.

Training never sees the window it is evaluated on: :func:`train_ranker` splits the data it is
given into a *fit* part (the recall sources and features are fitted on it) and a *label*
window after it (the last ``label_share`` of its baskets), whose baskets label the candidates:
a candidate is positive when it was bought in the same order as the seed. The last
``valid_share`` of the label window (by time) is held out for early stopping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from recset.data import Dataset, IdMap, Promotions, basket_queries, leave_last_split, time_split
from recset.errors import ConfigError, DataError, StorageError
from recset.ranking._candidates import discovery_candidates, ranking_candidates
from recset.ranking._compiled import BoosterScorer, Scorer, mean_scorer, scorer
from recset.ranking._features import USER_HISTORY, FeatureSpace, feature_names
from recset.recall import Mixer, RecallConfig, embed_items
from recset.storage import read_state, write_state

_log = logging.getLogger(__name__)

RANKER_ARTIFACT = "ranker"
RANKER_KIND = "ranker"
RANKER_FORMAT = 1
"""Format version of the saved ranker state (``ranker.json``); bump it when the layout changes."""
_RETRAIN = "retrain it with `recset train-ranker`"


class RankerConfig(BaseModel):
    """Hyperparameters and training-window settings of the ranker (``[ranker]`` in TOML).

    Attributes
    ----------
    candidates : int
        Candidates per seed that the ranker scores (taken from the mix).
    user_candidates : int
        The user's most-bought items added to the candidates (0: none).
    extra_features : list of str
        Registered plug-in features (:func:`~recset.ranking.register_feature`) the ranker
        reads after the built-in ones.
    promotion_features : bool
        When the training data has a promotion calendar (``promotions.parquet``), the ranker
        and the discovery model also read :data:`PROMOTION_FEATURES` at each request's time
        (docs/ranking.md); False: never. Without a calendar it changes nothing.
    bundle_features : bool
        The ranker and the discovery model read :data:`BUNDLE_FEATURES` (the user's own
        bundles: the share of the user's trips with the seed that also hold the candidate,
        and how many trips that is of; docs/ranking.md); False: only when named in
        ``extra_features``. Off with ``personal_features = false``.
    time_features : bool
        The ranker and the discovery model read :data:`TIME_FEATURES` (the candidate's lift
        at the request's time of the week; docs/ranking.md); False: only when named in
        ``extra_features``.
    personal_features : bool
        False: the ranker reads nothing of the user (no ``user_*`` / ``hist_copurchase``
        feature, no ``user_history`` candidates): the same list for every user of a seed,
        for hosts that leave personalization to the neural stage or do without it.
    explore_share : float
        For a known user, every prefix of length ``m`` of the served list holds at least
        ``floor(explore_share * m)`` candidates that user never bought (when there are
        that many); 0: rank purely by score. Repeat purchases dominate grocery baskets, so
        a pure ranking serves mostly what the user already buys; this keeps room for new
        complements.
    label_split : {"time", "leave_last"}
        How the label window is cut from the training data, mirroring the evaluation
        protocol: "time" takes the last ``label_share`` of the baskets; "leave_last" takes
        each user's last basket (for data without absolute dates, such as Instacart's).
    label_share : float
        Share of the training baskets (the most recent) that label the training queries
        (``label_split = "time"``).
    valid_share : float
        Share of the label window used for early stopping: the most recent baskets
        ("time"), or the baskets of a random share of the users ("leave_last").
    max_queries : int
        Training queries sampled from the label window (reproducibly).
    discover : bool
        Also train the discovery model that serves ``mode="discover"``: the same features,
        its candidates restricted to items new to the user (the ranker's candidates plus the
        ``discover_candidates`` items most co-bought with the user's history, minus
        everything the user bought), labelled by the targets among them.
    discover_candidates : int
        Items co-bought with the user's history added to the discovery candidates (0: none).
    discover_mix_candidates : int, optional
        Candidates per seed the discovery model takes from the mix (before the user's
        purchases are removed); None (the default): ``candidates``, as the ranker.
    discover_sar : int
        With ``discover``: the ``hist_sar`` / ``seed_sar`` features (personal SAR: the user's
        purchases times an item-item cosine of user co-occurrence) join the feature space and
        each user's ``discover_sar`` best never-bought items by ``hist_sar`` join the
        discovery candidates (0: neither).
    discover_windows : int
        Label windows of the discovery model: the last one (as the ranker's) and the
        ``discover_windows - 1`` before it, each labelling queries for features fitted on
        the data before it (each user's previous basket for ``leave_last``, the previous
        ``label_share`` of baskets for ``time``). First purchases are rare; more windows
        give the discovery model more of them.
    discover_objective : {"lambdarank", "binary"}
        The discovery model's LightGBM objective (early stopping reads NDCG@10 with either).
    discover_monotone : bool
        The discovery model's score may only rise with the affinity features
        (:data:`DISCOVER_MONOTONE`, those in its feature space): LightGBM monotone
        constraints, a guard against fitting noise in its few label queries.
    discover_rounds : {"valid", "cv"}
        How the discovery model's number of trees is chosen: ``"valid"`` early-stops on the
        validation users' label queries (as the ranker does); ``"cv"`` pools every label
        query, cuts the users into ``discover_folds`` folds, early-stops each fold on its
        held-out users' NDCG@10 (one fold in memory at a time), averages the folds' curves
        (a fold that stopped early held at its last value), then refits on all of them with
        the trees where that average peaks (``trees_tolerance`` and ``max_trees`` apply to
        the averaged curve).
    discover_folds : int
        Folds of ``discover_rounds = "cv"`` (users, not queries, are split).
    discover_models : int
        Discovery models trained on the same label queries and served by the mean of their
        scores (bagging): the first as above, model ``b`` under the seed ``seed + b`` (its
        LightGBM bagging and feature sampling, and, with ``label_split = "leave_last"`` or
        ``discover_rounds = "cv"``, its own validation users or folds). With few label
        queries a single model's early stopping is noisy; the mean is steadier.
    discover_n_estimators : int, optional
        The most trees a discovery model may grow (its early stopping keeps fewer when its
        validation NDCG@10 stops rising); None (the default): ``n_estimators``. A discover
        request costs what its kept trees cost; a cap of 1000 changed nothing on the
        validation windows and did not help on Complete Journey's test window
        (docs/benchmarks.md).
    num_leaves, learning_rate, n_estimators, min_child_samples, feature_fraction,
    bagging_fraction, lambda_l2 : LightGBM parameters.
    early_stopping_rounds : int
    trees_tolerance : float
        Keep the fewest trees whose NDCG@10 on the validation part of the label window is
        within this of the best there (0: the best iteration, as early stopping picks it).
        Scoring costs grow with the trees; the choice uses the validation window only.
    max_trees : int, optional
        At most this many trees are kept (after ``trees_tolerance``).
    seed : int
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    candidates: int = Field(100, ge=2, le=2000)
    user_candidates: int = Field(30, ge=0, le=1000)
    extra_features: tuple[str, ...] = ()
    promotion_features: bool = True
    bundle_features: bool = True
    time_features: bool = True
    personal_features: bool = True
    explore_share: float = Field(0.0, ge=0, le=1)
    label_split: Literal["time", "leave_last"] = "time"
    label_share: float = Field(0.2, gt=0, lt=1)
    valid_share: float = Field(0.25, gt=0, lt=1)
    max_queries: int = Field(30_000, ge=10)
    discover: bool = False
    discover_candidates: int = Field(50, ge=0, le=50)
    discover_mix_candidates: int | None = Field(None, ge=2, le=2000)
    discover_sar: int = Field(50, ge=0, le=50)
    discover_windows: int = Field(3, ge=1, le=10)
    discover_objective: Literal["lambdarank", "binary"] = "lambdarank"
    discover_monotone: bool = False
    discover_rounds: Literal["valid", "cv"] = "valid"
    discover_folds: int = Field(5, ge=2, le=20)
    discover_models: int = Field(3, ge=1, le=10)
    discover_n_estimators: int | None = Field(None, ge=1)
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0)
    n_estimators: int = Field(300, ge=1)
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(30, ge=1)
    trees_tolerance: float = Field(0.0, ge=0, le=1)
    max_trees: int | None = Field(None, ge=1)
    seed: int = 0

    @property
    def discover_mix(self) -> int:
        """Candidates per seed the discovery model takes from the mix."""
        return self.discover_mix_candidates or self.candidates

    @property
    def discover_trees(self) -> int:
        """The most trees a discovery model may grow."""
        return self.discover_n_estimators or self.n_estimators


@dataclass
class Ranker:
    """A trained LightGBM model plus the feature space it reads."""

    booster: Any
    features: FeatureSpace
    config: RankerConfig
    users: IdMap
    metrics: dict[str, Any] = field(default_factory=dict)
    discover_booster: Any = None
    discover_members: tuple[Any, ...] = ()
    """The discovery models after the first (``discover_models`` > 1): served by the mean of
    all their scores."""
    scorers: tuple[Scorer, Scorer | None] | None = field(default=None, repr=False)
    """The models' scorers (compiled when :meth:`load` or :meth:`save` could compile them);
    None: LightGBM's ``predict``."""
    valid_curve: list[float] = field(default_factory=list, repr=False)
    """Validation NDCG@10 of the ranker after each boosting round (training only; not saved)."""
    _used: dict[str, NDArray[np.bool_]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def feature_names(self) -> list[str]:
        return self.features.names

    @property
    def scorer_kind(self) -> str:
        """What scores the rows: ``"lleaves"`` (the compiled model) or ``"lightgbm"``."""
        return self._scorers()[0].kind

    def _scorers(self) -> tuple[Scorer, Scorer | None]:
        if self.scorers is None:
            disc = self.discover_booster
            self.scorers = (
                BoosterScorer(self.booster),
                None
                if disc is None
                else mean_scorer([BoosterScorer(b) for b in (disc, *self.discover_members)]),
            )
        return self.scorers

    def used_columns(self, mode: str = "complete") -> NDArray[np.bool_]:
        """Per feature column, whether a tree of the models that score ``mode``
        (``"complete"``: the ranker; ``"discover"``: every discovery model) splits on it.

        A column no tree splits on cannot change a score, so the stages leave those
        features uncomputed (``FeatureSpace.transform(columns=...)``); the scores are the
        same. Counted over every tree of each model (LightGBM's split importance with no
        iteration limit).
        """
        used = self._used.get(mode)
        if used is None:
            models = [self.booster] if mode == "complete" else self._discover_models()
            if mode not in ("complete", "discover") or not models:
                raise ConfigError(f"no {mode!r} model in this ranker")
            counts = [np.asarray(m.feature_importance("split", iteration=-1)) for m in models]
            used = self._used[mode] = np.any(np.stack(counts) > 0, axis=0)
        return used

    def score(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        """Scores of feature rows (higher is better), on the calling thread."""
        return self._scorers()[0].predict(X)

    def score_new(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        """Scores of the discovery model (``ConfigError`` when it was not trained)."""
        disc = self._scorers()[1]
        if disc is None:
            raise ConfigError(
                "this ranker has no discovery model: train it with `[ranker] discover = true`"
            )
        return disc.predict(X)

    def importance(self) -> list[tuple[str, float]]:
        """(feature, total gain) pairs, largest first."""
        gains = self.booster.feature_importance(importance_type="gain")
        return sorted(zip(self.feature_names, map(float, gains), strict=True), key=lambda x: -x[1])

    def save(self, directory: Path, *, compiled: bool = True) -> None:
        """Write the ranker into ``directory``.

        Files: ``model.txt`` (the LightGBM text format; ``discover.txt`` the discovery
        model, when trained, and ``discover-1.txt`` ... its other members with
        ``discover_models`` > 1), ``features/`` (the
        :class:`FeatureSpace`) and the ``"ranker"`` state of :func:`~recset.storage.write_state`
        (``ranker.json``: feature names, config, training metrics, the training users' ids).
        With ``compiled`` and lleaves installed (``recset[fast]``), the models are compiled
        too, their machine code cached next to them for :meth:`load`
        (:mod:`recset.ranking._compiled`), and this ranker scores with them.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(directory / "model.txt"))
        discover = self._discover_models()
        for file, booster in zip(_discover_files(directory, len(discover)), discover, strict=True):
            booster.save_model(str(file))
        if compiled:
            self.scorers = _scorers_of(directory, self.booster, discover)
        self.features.save(directory / "features")
        meta = {
            "feature_names": self.feature_names,
            "config": self.config.model_dump(mode="json"),
            "metrics": self.metrics,
            "users": self.users.values.tolist(),
        }
        write_state(directory, RANKER_KIND, RANKER_FORMAT, meta=meta)

    @classmethod
    def load(
        cls,
        directory: Path,
        *,
        sources: tuple[str, ...] | None = None,
        compiled: bool = True,
    ) -> Ranker:
        """Load a saved ranker; refuse one whose feature list does not match this code.

        Parameters
        ----------
        directory : Path
        sources : tuple of str, optional
            The recall sources the engine mixes; a ranker trained on others is refused.
        compiled : bool
            Score with the lleaves-compiled models (extra ``recset[fast]``; compiled now
            unless cached next to the models); without lleaves, or when false, with
            LightGBM's ``predict`` (the log says which).

        Raises
        ------
        ConfigError
            When the directory was written by another recset version (an older layout,
            another format version, a missing file), or the ranker does not fit this recset
            or ``sources``: the message says to retrain it with ``recset train-ranker``.
        """
        import lightgbm as lgb

        directory = Path(directory)
        try:
            state = read_state(directory, RANKER_KIND, RANKER_FORMAT)
        except StorageError as exc:
            raise ConfigError(f"{exc}; {_RETRAIN}") from None
        meta = state.meta
        try:
            trained_on = [str(n) for n in meta["feature_names"]]
            saved = dict(meta["config"])
            # rankers saved before `discover_models` existed hold one discovery model
            saved.setdefault("discover_models", 1)
            config = RankerConfig.model_validate(saved)
            metrics = dict(meta.get("metrics") or {})
            if not isinstance(meta["users"], list):
                raise TypeError(f"users is a {type(meta['users']).__name__}, not a list")
            users = IdMap(meta["users"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{directory / (RANKER_KIND + '.json')}: unreadable ranker metadata ({exc!r}); "
                f"{_RETRAIN}"
            ) from None
        features = FeatureSpace.load(directory / "features")
        expected = feature_names(features.sources, features.feature_list)
        own = tuple(s for s in features.sources if s != USER_HISTORY)
        if sources is not None and own != tuple(sources):
            raise ConfigError(
                f"{directory}: the ranker reads sources {list(own)}, the engine mixes "
                f"{list(sources)}; {_RETRAIN}"
            )
        if trained_on != expected:
            raise ConfigError(
                f"{directory}: the ranker was trained on features {trained_on}, "
                f"this recset computes {expected}; {_RETRAIN}"
            )
        model_file = directory / "model.txt"
        boosters = []
        files = [model_file]
        if config.discover:
            files += _discover_files(directory, config.discover_models)
        for file in files:
            if not file.is_file():
                raise ConfigError(f"{file}: missing (a LightGBM model); {_RETRAIN}")
            booster = lgb.Booster(model_file=str(file))
            if booster.num_feature() != len(expected):
                raise ConfigError(
                    f"{file}: the model reads {booster.num_feature()} features, "
                    f"expected {len(expected)}; {_RETRAIN}"
                )
            boosters.append(booster)
        discover = boosters[1:]
        scorers = _scorers_of(directory, boosters[0], discover, compiled=compiled)
        return cls(
            boosters[0],
            features,
            config,
            users,
            metrics,
            discover[0] if discover else None,
            tuple(discover[1:]),
            scorers,
        )

    def with_calendar(self, promotions: Promotions) -> Ranker:
        """This ranker reading ``promotions`` (a calendar indexed by the items it was trained
        on) at the request's time instead of the calendar it was trained with: the same
        models, the same learned features; the calendar features read the new schedule
        (``recset update-calendar``). Next month's mailer reaches the served lists without
        retraining. ``metrics["calendar"]`` records the new calendar's span and size.

        Raises
        ------
        ConfigError
            When no feature of this ranker reads a calendar when it serves.
        """
        space, changed = self.features.with_calendar(promotions)
        span = [int(promotions.start.min()), int(promotions.end.max())] if len(promotions) else []
        calendar = {
            "periods": len(promotions),
            "items": int(len(np.unique(promotions.item))),
            "channels": list(promotions.channels),
            "span": span,
            "features": list(changed),
        }
        return replace(self, features=space, metrics={**self.metrics, "calendar": calendar})

    def _discover_models(self) -> list[Any]:
        """Every discovery model (none when it was not trained)."""
        if self.discover_booster is None:
            return []
        return [self.discover_booster, *self.discover_members]


def _discover_files(directory: Path, n: int) -> list[Path]:
    """The files of ``n`` discovery models: ``discover.txt``, ``discover-1.txt``, ..."""
    return [directory / ("discover.txt" if b == 0 else f"discover-{b}.txt") for b in range(n)]


def _scorers_of(
    directory: Path, booster: Any, discover: list[Any], *, compiled: bool = True
) -> tuple[Scorer, Scorer | None]:
    """Scorers of a saved ranker's models (``model.txt``; the discovery models, one scorer
    for the mean of their scores)."""
    main = scorer(booster, directory / "model.txt", compiled=compiled)
    if not discover:
        return main, None
    files = _discover_files(directory, len(discover))
    members = [
        scorer(b, f, compiled=main.kind != "lightgbm") for b, f in zip(discover, files, strict=True)
    ]
    return main, mean_scorer(members)


def _labels(mixed_item: NDArray[np.int32], queries: Any) -> NDArray[np.float32]:
    """1 where a candidate is one of its query's targets (bought in the same order)."""
    n, w = mixed_item.shape
    tg = queries.targets
    width = int(max(mixed_item.max(initial=0), tg.item.max(initial=0))) + 2
    keys = np.arange(n, dtype=np.int64)[:, None] * width + np.where(
        mixed_item >= 0, mixed_item, width - 1
    )
    tkeys = tg.query_of_entry() * width + tg.item
    return (np.isin(keys, tkeys) & (mixed_item >= 0)).astype(np.float32)


def training_matrix(
    mixer: Mixer,
    features: FeatureSpace,
    queries: Any,
    n: int,
    *,
    discover: int | None = None,
    n_sar: int = 0,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """(X, y, group sizes) for queries: the mix's top-``n`` per seed, labelled.

    With ``discover`` (the history candidates to add), the discovery candidates
    (:func:`~recset.ranking._candidates.discovery_candidates`): targets the user already
    bought are never candidates, so the labels are the targets new to the user.
    """
    return labelled_queries(mixer, features, queries, n, discover=discover, n_sar=n_sar)[:3]


def labelled_queries(
    mixer: Mixer,
    features: FeatureSpace,
    queries: Any,
    n: int,
    *,
    discover: int | None = None,
    n_sar: int = 0,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], NDArray[np.int32]]:
    """:func:`training_matrix` plus the user of each kept query (one per group), which
    :func:`_boost_cv` splits into folds."""
    top = mixer.top(queries.seed, n)
    if discover is None:
        mixed = ranking_candidates(top, features, queries.seed, queries.user, mixer.available)
    else:
        mixed = discovery_candidates(
            top, features, queries.seed, queries.user, mixer.available, discover, n_sar
        )
    y = _labels(mixed.item, queries)
    X = features.transform(queries.seed, queries.user, mixed, queries.time)
    valid = mixed.item.ravel() >= 0
    has_pos = y.sum(axis=1) > 0
    keep_rows = np.repeat(has_pos, mixed.item.shape[1]) & valid
    group = ((mixed.item >= 0) & has_pos[:, None]).sum(axis=1)
    kept = group > 0
    users = np.asarray(queries.user, dtype=np.int32)[kept]
    return X[keep_rows], y.ravel()[keep_rows], group[kept], users


@contextmanager
def _rounds(
    label: str, total: int, enabled: bool, every: float = 10.0
) -> Iterator[list[Callable[[Any], None]]]:
    """LightGBM callbacks that report boosting rounds while ``enabled``: a bar on a terminal,
    else a line every few seconds on the ``recset.progress`` logger (early stopping may end
    the rounds before ``total``)."""
    if not enabled:
        yield []
        return
    from recset.progress import Ticker

    with Ticker(label, total, bar=True, every=every) as ticker:
        yield [lambda env: ticker.update(1)]


def train_ranker(
    dataset: Dataset,
    config: RecallConfig | None = None,
    ranker_config: RankerConfig | None = None,
    *,
    mixer: Mixer | None = None,
    embeddings: NDArray[np.float32] | None = None,
    show_progress: bool = False,
) -> Ranker:
    """Train a ranker on ``dataset`` and return it ready to serve (see the module docstring
    for the windows).

    The recall sources are fitted on the *fit* part to build the training candidates; the
    returned ranker's :class:`FeatureSpace` is then refitted on the whole ``dataset`` for the
    candidates of ``mixer`` (the mix it will serve: an engine's ``mixer``; fitted on
    ``dataset`` with ``config`` when not given), so its statistics cover the latest data.

    Parameters
    ----------
    config : RecallConfig, optional
        The recall configuration (a root :class:`~recset.config.Config` is one); its
        ``ranker`` section is used when ``ranker_config`` is not given.
    embeddings : ndarray of float32, shape (n_items, d), optional
        Item text embeddings (computed from the catalog when not given).
    """

    if config is None:
        config = RecallConfig()
    rc = ranker_config or getattr(config, "ranker", None) or RankerConfig()
    if embeddings is None:
        embeddings = embed_items(dataset)  # catalog text only: the same for every window
    if rc.label_split == "leave_last":
        split = leave_last_split(dataset)
    else:
        split = time_split(dataset, test_share=rc.label_share)
    fit_part, label = split.train, split.test
    extra = ranker_features(rc, dataset)
    fit_mixer = Mixer.fit(fit_part, config, show_progress=show_progress)
    features = fit_features(
        fit_part,
        fit_mixer,
        embeddings=embeddings,
        user_candidates=rc.user_candidates,
        extra_features=extra,
        personal_features=rc.personal_features,
    )
    queries = basket_queries(label)
    if len(queries) < 10:
        raise DataError(
            f"{dataset.name}: only {len(queries)} labelled queries in the ranker's label window; "
            "the ranker needs baskets with >= 2 items after the fit part"
        )
    rng = np.random.default_rng(rc.seed)
    if rc.label_split == "leave_last":
        valid_user = rng.random(dataset.n_users) < rc.valid_share
        is_valid = valid_user[queries.user]
    else:
        t_valid = np.quantile(label.baskets.timestamp, 1 - rc.valid_share)
        is_valid = label.baskets.timestamp[queries.basket] >= t_valid
    idx_train = np.flatnonzero(~is_valid)
    idx_valid = np.flatnonzero(is_valid)
    cap_t = int(rc.max_queries * (1 - rc.valid_share))
    cap_v = rc.max_queries - cap_t
    if len(idx_train) > cap_t:
        idx_train = np.sort(rng.choice(idx_train, cap_t, replace=False))
    if len(idx_valid) > cap_v:
        idx_valid = np.sort(rng.choice(idx_valid, cap_v, replace=False))
    train_q, valid_q = queries.take(idx_train), queries.take(idx_valid)
    train = training_matrix(fit_mixer, features, train_q, rc.candidates)
    valid = training_matrix(fit_mixer, features, valid_q, rc.candidates)
    if len(train[2]) == 0:
        raise DataError(f"{dataset.name}: no training query has a positive among its candidates")
    params = ranker_params(rc)
    names = features.names
    booster, metrics, curve = _boost("ranker", params, rc, names, train, valid, show_progress)
    discover_booster, discover_members = None, ()
    if rc.discover:
        n_hist, n_sar = rc.discover_candidates, rc.discover_sar if rc.personal_features else 0
        d_train = labelled_queries(
            fit_mixer, features, train_q, rc.discover_mix, discover=n_hist, n_sar=n_sar
        )
        d_valid = labelled_queries(
            fit_mixer, features, valid_q, rc.discover_mix, discover=n_hist, n_sar=n_sar
        )
        # earlier label windows, each with the features of the data before it
        parts_t, parts_v = [d_train], [d_valid]
        rest = fit_part
        for w in range(2, rc.discover_windows + 1):
            try:
                inner = (
                    leave_last_split(rest)
                    if rc.label_split == "leave_last"
                    else time_split(rest, test_share=rc.label_share)
                )
            except DataError:
                break
            q = basket_queries(inner.test)
            if len(q) == 0 or inner.train.events.timestamp.size == 0:
                break
            w_mixer = Mixer.fit(inner.train, config, show_progress=show_progress)
            w_features = fit_features(
                inner.train,
                w_mixer,
                embeddings=embeddings,
                user_candidates=rc.user_candidates,
                extra_features=extra,
                personal_features=rc.personal_features,
            )
            w_rng = np.random.default_rng(rc.seed + w)
            if rc.label_split == "leave_last":  # a validation user's windows all validate
                w_valid = valid_user[q.user]
            else:  # only the last window validates (the others are older)
                w_valid = np.zeros(len(q), dtype=bool)
            it, iv = np.flatnonzero(~w_valid), np.flatnonzero(w_valid)
            if len(it) > cap_t:
                it = np.sort(w_rng.choice(it, cap_t, replace=False))
            if len(iv) > cap_v:
                iv = np.sort(w_rng.choice(iv, cap_v, replace=False))
            for idx, parts in ((it, parts_t), (iv, parts_v)):
                if len(idx):
                    parts.append(
                        labelled_queries(
                            w_mixer,
                            w_features,
                            q.take(idx),
                            rc.discover_mix,
                            discover=n_hist,
                            n_sar=n_sar,
                        )
                    )
            rest = inner.train
        d_train = _stack(parts_t)
        d_valid = _stack(parts_v)
        if len(d_train[2]) == 0:
            raise DataError(
                f"{dataset.name}: no training query has a target new to its user among the "
                "discovery candidates; train without `discover`"
            )
        d_params = discover_params(params, rc, names)
        discover_models, metrics["discover"] = fit_discovery(
            d_train, d_valid, d_params, rc, names, dataset.n_users, show_progress
        )
        discover_booster, discover_members = discover_models[0], tuple(discover_models[1:])
        metrics["discover"]["label_windows"] = len(parts_t)
    if mixer is None:
        mixer = Mixer.fit(dataset, config, show_progress=show_progress)
    served = fit_features(
        dataset,
        mixer,
        embeddings=embeddings,
        user_candidates=rc.user_candidates,
        extra_features=extra,
        personal_features=rc.personal_features,
    )
    return Ranker(
        booster,
        served,
        rc,
        dataset.users,
        metrics,
        discover_booster,
        discover_members,
        valid_curve=curve,
    )


def ranker_params(rc: RankerConfig) -> dict[str, Any]:
    """The ranker's LightGBM parameters (lambdarank, NDCG@10 for early stopping) from ``rc``;
    the discovery model's are :func:`discover_params` of them."""
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "num_leaves": rc.num_leaves,
        "learning_rate": rc.learning_rate,
        "min_child_samples": rc.min_child_samples,
        "feature_fraction": rc.feature_fraction,
        "bagging_fraction": rc.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": rc.lambda_l2,
        "seed": rc.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbosity": -1,
    }


DISCOVER_MONOTONE = (
    "hist_sar",
    "seed_sar",
    "hist_copurchase",
    "seed_confidence",
    "user_new_category",
    "user_category_share",
    "user_brand_share",
    "cand_new_buyers",
)
"""Affinity features the discovery model's score may only rise with (``discover_monotone``):
how strongly the candidate goes with the user's history or the seed, how much of the user's
buying falls in its category or brand, how often people start buying it."""


def discover_params(params: dict[str, Any], rc: RankerConfig, names: list[str]) -> dict[str, Any]:
    """The discovery model's LightGBM parameters: the ranker's ``params`` with
    ``rc.discover_objective`` and, with ``rc.discover_monotone``, increasing constraints on
    the :data:`DISCOVER_MONOTONE` features among ``names``."""
    out = {**params, "objective": rc.discover_objective}
    if rc.discover_monotone:
        out["monotone_constraints"] = [int(n in DISCOVER_MONOTONE) for n in names]
        out["monotone_constraints_method"] = "intermediate"
    return out


PROMOTION_FEATURES = ("cand_promo", "cand_promo_channels", "cand_promo_lift")
"""The calendar features a ranker reads when its data has a promotion calendar and
``promotion_features`` is on (chosen on Complete Journey's validation window:
docs/benchmarks.md)."""


TIME_FEATURES = ("cand_time_lift",)
"""The time of the week, read by default (``time_features``; chosen on the discovery
model's validation windows: docs/benchmarks.md "Two more kinds of signal")."""


def ranker_features(rc: RankerConfig, dataset: Dataset) -> tuple[str, ...]:
    """:func:`discover_features`, plus :data:`PROMOTION_FEATURES` when ``dataset`` has a
    promotion calendar and ``rc.promotion_features`` is on, then :data:`TIME_FEATURES` with
    ``rc.time_features``."""
    extra = discover_features(rc)
    if rc.promotion_features and dataset.promotions is not None:
        extra += tuple(f for f in PROMOTION_FEATURES if f not in extra)
    if rc.time_features:
        extra += tuple(f for f in TIME_FEATURES if f not in extra)
    return extra


BUNDLE_FEATURES = ("user_seed_cand_share", "user_seed_trips")
"""The user's own bundles, read by default (``bundle_features``; chosen on Complete
Journey's validation window: docs/benchmarks.md "New kinds of signal")."""


def discover_features(rc: RankerConfig) -> tuple[str, ...]:
    """The ranker's plug-in features: :data:`BUNDLE_FEATURES` (with ``bundle_features`` and
    ``personal_features``), ``rc.extra_features``, then ``hist_sar`` and ``seed_sar`` when
    the discovery model reads them (``discover`` with ``discover_sar``)."""
    extra = tuple(rc.extra_features)
    if rc.bundle_features and rc.personal_features:
        extra = tuple(f for f in BUNDLE_FEATURES if f not in extra) + extra
    if rc.discover and rc.discover_sar > 0 and rc.personal_features:
        extra += tuple(f for f in ("hist_sar", "seed_sar") if f not in extra)
    return extra


_Labelled = tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], NDArray[np.int32]]


def _stack(parts: list[_Labelled]) -> _Labelled:
    """Labelled queries (X, y, group sizes, users) of several label windows, one after
    another."""
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
    )


def fit_discovery(
    d_train: _Labelled,
    d_valid: _Labelled,
    params: dict[str, Any],
    rc: RankerConfig,
    names: list[str],
    n_users: int,
    show_progress: bool = False,
) -> tuple[list[Any], dict[str, Any]]:
    """The ``rc.discover_models`` discovery models on the labelled queries ``d_train`` /
    ``d_valid`` (X, y, group sizes, users) and the fit metrics of the first.

    The first model early-stops on ``d_valid`` (or, with ``discover_rounds = "cv"``, on folds
    of both, drawn from ``rc.seed``). Model ``b`` > 0 is trained under the seed
    ``rc.seed + b``: LightGBM's bagging and feature sampling and the cross-validation folds
    take it, and with ``label_split = "leave_last"`` its validation users are drawn afresh
    from it (``rc.valid_share`` of the users of both parts); a time split keeps its
    validation window (the most recent label baskets) for every model. With several models
    the metrics also list each one's ``members`` (trees, validation NDCG@10, queries).
    """
    n = rc.discover_models
    boosters: list[Any] = []
    members: list[dict[str, Any]] = []
    first: dict[str, Any] = {}
    # both parts in one (stacked once): the cross-validation's data, and the queries each
    # leave-last model after the first deals to its own validation users (unused otherwise)
    resplits = n > 1 and rc.label_split == "leave_last"
    pooled = _stack([d_train, d_valid]) if rc.discover_rounds == "cv" or resplits else d_train
    for b in range(n):
        rc_b = rc.model_copy(update={"seed": rc.seed + b, "n_estimators": rc.discover_trees})
        p_b = {**params, "seed": rc_b.seed}
        label = "discovery model" if n == 1 else f"discovery model {b + 1}/{n}"
        if rc.discover_rounds == "cv":
            booster, m, _ = _boost_cv(label, p_b, rc_b, names, pooled, show_progress)
        else:
            tr, va = d_train, d_valid
            if b > 0 and resplits:
                valid_user = np.random.default_rng(rc_b.seed).random(n_users) < rc.valid_share
                tr, va = _split_users(pooled, valid_user)
            booster, m, _ = _boost(label, p_b, rc_b, names, tr[:3], va[:3], show_progress)
        boosters.append(booster)
        first = first or m
        members.append(
            {k: m.get(k) for k in ("trees", "valid_ndcg@10", "train_queries", "valid_queries")}
            | {"seed": rc_b.seed}
        )
    if n > 1:
        first = {**first, "models": n, "members": members}
    return boosters, first


def _split_users(data: _Labelled, valid_user: NDArray[np.bool_]) -> tuple[_Labelled, _Labelled]:
    """(training, validation) labelled queries of ``data``: the queries of the users where
    ``valid_user`` is true validate."""
    X, y, g, users = data
    q_valid = valid_user[users]
    row_valid = np.repeat(q_valid, g)
    return (
        (X[~row_valid], y[~row_valid], g[~q_valid], users[~q_valid]),
        (X[row_valid], y[row_valid], g[q_valid], users[q_valid]),
    )


def user_folds(
    group: NDArray[np.int64], users: NDArray[np.int32], n_folds: int, seed: int
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """(train rows, held-out rows) of ``n_folds`` folds over the rows of queries with
    ``group`` sizes: every query of a user falls in the same fold (the queries of one
    basket share their targets, and one user's baskets their tastes), the users dealt to
    the folds in a random order drawn from ``seed``."""
    uniq, inv = np.unique(users, return_inverse=True)
    if len(uniq) < n_folds:
        raise DataError(
            f"discover_rounds = 'cv' needs at least discover_folds = {n_folds} users with "
            f"labelled discovery queries; got {len(uniq)}"
        )
    order = np.random.default_rng(seed).permutation(len(uniq))
    fold_of_user = np.empty(len(uniq), dtype=np.int64)
    fold_of_user[order] = np.arange(len(uniq)) % n_folds
    row_fold = np.repeat(fold_of_user[inv], group)
    rows = np.arange(len(row_fold), dtype=np.int64)
    return [(rows[row_fold != f], rows[row_fold == f]) for f in range(n_folds)]


def _boost_cv(
    label: str,
    params: dict[str, Any],
    rc: RankerConfig,
    names: list[str],
    data: _Labelled,
    show_progress: bool,
) -> tuple[Any, dict[str, Any], list[float]]:
    """The number of trees chosen by user-grouped cross-validation (``discover_rounds =
    "cv"``), then one model refitted on all of ``data`` with that many trees; the booster,
    its metrics and the fold-averaged NDCG@10 curve.

    The label rows are binned once (one LightGBM ``Dataset``, its raw copy released); each
    of the :func:`user_folds` in turn trains on a ``Dataset.subset`` of it (the subsets
    share its bin mappers), early-stops on its held-out users' NDCG@10 and keeps only that
    curve before the next fold is built, so memory holds one fold's binned rows at a time
    (LightGBM ``cv`` keeps every fold's at once: 14 GiB on Complete Journey's validation
    window). :func:`_cv_curve` averages the folds' curves and :func:`_kept_trees` cuts it.
    """
    import gc

    import lightgbm as lgb

    X, y, g, users = data
    folds = user_folds(g, users, rc.discover_folds, rc.seed)
    # the fold subsets are binned with the full set's mappers under these same parameters
    full = lgb.Dataset(
        X, y, group=g, feature_name=names, params=params, free_raw_data=True
    ).construct()
    curves: list[list[float]] = []
    for k, (rows_train, rows_held) in enumerate(folds, 1):
        fold_train = full.subset(rows_train.tolist())
        fold_held = full.subset(rows_held.tolist())
        evals: dict[str, Any] = {}
        with _rounds(
            f"{label}: cross-validation fold {k}/{len(folds)} rounds",
            rc.n_estimators,
            show_progress,
        ) as shown:
            booster = lgb.train(
                params,
                fold_train,
                num_boost_round=rc.n_estimators,
                valid_sets=[fold_held],
                callbacks=[
                    lgb.early_stopping(rc.early_stopping_rounds, verbose=False),
                    lgb.record_evaluation(evals),
                    *shown,
                ],
            )
        curves.append([float(v) for v in evals["valid_0"]["ndcg@10"]])
        # free this fold's binned rows and booster before the next fold is built
        del booster, fold_train, fold_held, evals
        gc.collect()
    curve, spread = _cv_curve(curves)
    best = int(np.argmax(curve)) + 1
    keep = _kept_trees(curve, best, rc)
    with _rounds(f"{label}: refit rounds", keep, show_progress) as shown:
        booster = lgb.train(params, full, num_boost_round=keep, callbacks=shown)
    metrics = {
        "train_queries": int(len(g)),
        "valid_queries": 0,
        "train_rows": int(len(y)),
        "rounds": "cv",
        "cv_folds": rc.discover_folds,
        "cv_users": int(len(np.unique(users))),
        "cv_fold_rounds": [len(c) for c in curves],
        "best_iteration": best,
        "trees": keep,
        "valid_ndcg@10": curve[keep - 1],
        "cv_ndcg@10_stdv": spread[keep - 1],
        "positive_rate": float(y.mean()) if len(y) else 0.0,
    }
    _log.info("%s trained: %s", label, metrics)
    return booster, metrics, curve


def _cv_curve(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    """The mean and (population) standard deviation across folds of their NDCG@10 after each
    round, ``curves`` holding one list per fold.

    Each fold early-stops on its own, so the curves differ in length: a fold that stopped
    before the longest is extended by its last value (held flat at the score it stopped
    with, not extrapolated), and the mean runs to the longest fold's last round. A fold
    stops ``early_stopping_rounds`` after its own best, past which its curve no longer rose,
    so the flat extension neither makes a peak of its own nor hides a later one of the
    folds that ran on.
    """
    if not curves or min(len(c) for c in curves) == 0:
        raise ValueError(f"every cross-validation fold needs an evaluation curve; got {curves}")
    n = max(len(c) for c in curves)
    padded = np.array([c + [c[-1]] * (n - len(c)) for c in curves], dtype=np.float64)
    return padded.mean(axis=0).tolist(), padded.std(axis=0).tolist()


def _boost(
    label: str,
    params: dict[str, Any],
    rc: RankerConfig,
    names: list[str],
    train: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]],
    valid: tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]],
    show_progress: bool,
) -> tuple[Any, dict[str, Any], list[float]]:
    """One LightGBM lambdarank model on ``train`` (X, y, group sizes), early-stopped on
    ``valid`` when it holds any query and cut to the trees ``rc`` keeps
    (:func:`_kept_trees`); the booster, its fit metrics and the validation NDCG@10 after
    each round (empty without validation queries)."""
    import lightgbm as lgb

    (Xt, yt, gt), (Xv, yv, gv) = train, valid
    dtrain = lgb.Dataset(Xt, yt, group=gt, feature_name=names, free_raw_data=True)
    valid_sets, callbacks = [], []
    evals: dict[str, Any] = {}
    if len(gv):
        valid_sets = [lgb.Dataset(Xv, yv, group=gv, reference=dtrain)]
        callbacks.append(lgb.early_stopping(rc.early_stopping_rounds, verbose=False))
        callbacks.append(lgb.record_evaluation(evals))
    with _rounds(f"{label}: boosting rounds", rc.n_estimators, show_progress) as shown:
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=rc.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks + shown,
        )
    curve = [float(v) for v in evals.get("valid_0", {}).get("ndcg@10", [])]
    best = int(booster.best_iteration or booster.current_iteration())
    metrics = _fit_metrics(booster, gt, gv, yt)
    keep = _kept_trees(curve, best, rc)
    if keep < booster.current_iteration():
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=keep))
    metrics["trees"] = keep
    if curve:
        metrics["valid_ndcg@10"] = curve[keep - 1]
    _log.info("%s trained: %s", label, metrics)
    return booster, metrics, curve


def _kept_trees(curve: list[float], best: int, rc: RankerConfig) -> int:
    """How many trees to keep: the fewest whose validation NDCG@10 (``curve``, one value per
    round) is within ``rc.trees_tolerance`` of the best of the first ``best`` rounds, at
    most ``rc.max_trees``."""
    keep = best
    if curve:
        top = max(curve[:best])
        keep = next(i + 1 for i, v in enumerate(curve[:best]) if v >= top - rc.trees_tolerance)
    return max(1, min(keep, rc.max_trees or keep))


def _fit_metrics(
    booster: Any, gt: NDArray[np.int64], gv: NDArray[np.int64], yt: NDArray[np.float32]
) -> dict[str, Any]:
    return {
        "train_queries": int(len(gt)),
        "valid_queries": int(len(gv)),
        "train_rows": int(len(yt)),
        "best_iteration": int(booster.best_iteration or booster.current_iteration()),
        "valid_ndcg@10": float(booster.best_score["valid_0"]["ndcg@10"]) if len(gv) else None,
        "positive_rate": float(yt.mean()) if len(yt) else 0.0,
    }


def fit_features(
    dataset: Dataset,
    mixer: Mixer,
    *,
    embeddings: NDArray[np.float32] | None = None,
    user_candidates: int = 0,
    extra_features: Sequence[str] = (),
    personal_features: bool = True,
) -> FeatureSpace:
    """A :class:`FeatureSpace` on ``dataset`` for the candidates of ``mixer``."""
    import scipy.sparse as sp

    rel = None
    compat = None
    for src in mixer.sources.values():
        kind = type(src).name
        if kind == "related_categories" and rel is None:
            related, sim = src.related_, src.similarity_  # type: ignore[attr-defined]
            n = len(related)
            rows = np.repeat(np.arange(n), related.shape[1])
            ok = related.ravel() >= 0
            rel = sp.csr_matrix((sim.ravel()[ok], (rows[ok], related.ravel()[ok])), shape=(n, n))
        if kind == "compatibility" and compat is None:
            compat = (src.seed_codes_, src.cand_codes_)  # type: ignore[attr-defined]
    if embeddings is None:
        embeddings = embed_items(dataset)
    return FeatureSpace.fit(
        dataset,
        mixer.source_order,
        embeddings=embeddings,
        category_relatedness=rel,
        compat_codes=compat,
        user_candidates=user_candidates,
        extra_features=extra_features,
        personal_features=personal_features,
    )
