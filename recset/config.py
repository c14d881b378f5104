"""Engine configuration: TOML validated into frozen, typed objects at load time.

An unknown section, source, filter or key is a :class:`~recset.errors.ConfigError` naming the
file, the key and the allowed values. ``config/default.toml`` documents every key with its
default.

Layout::

    [build]                      # how the engine is built
    [sources.NAME]               # one recall source; NAME is its type unless `type` is given
    [mix]                        # the default recall mix: sources, limits, weights, filters
    [categories."ID or PATH"]    # per-category overrides of [mix]; the most specific wins
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recset.errors import ConfigError
from recset.personalization._config import NeuralConfig
from recset.personalization._type_transition_config import TypeTransitionConfig
from recset.ranking._ranker import RankerConfig
from recset.recall import SourceConfig, registered_recall_sets

FILTER_TYPES = ("related_categories", "compatibility", "substitutes")
"""Source types that act as filters (they implement ``keep``)."""

DEFAULT_MIX_SOURCES = (
    "co_purchase_only",
    "co_purchase",
    "co_view",
    "compatibility",
    "complementary_of_similar",
    "popular",
)


class BuildConfig(BaseModel):
    """How the engine is built and served.

    Attributes
    ----------
    candidates_per_seed : int
        Length of the candidate list precomputed per seed.
    fallback : str
        The source that answers for unknown (cold-start) seeds and fills short lists.
    half_life_days : float
        Temporal decay of the behaviour counts (co-purchase, co-view...) in days; 0 = none.
    max_group_size : int
        Baskets / sessions with more distinct items are left out of pair counts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    candidates_per_seed: int = Field(100, ge=1, le=10_000)
    fallback: str = "popular"
    half_life_days: float = Field(0.0, ge=0)
    max_group_size: int = Field(100, ge=2)


# a source's limit (0 takes nothing from it) and weight: never negative, since fused scores
# must be non-negative for Engine._fill to keep fallback items below them
_Limit = Annotated[int, Field(ge=0)]
_Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class MixConfig(BaseModel):
    """A recall mix: which sources, how many candidates from each, how they are fused.

    Attributes
    ----------
    sources : list of str
        Source names, in order of preference.
    limits : dict of str to int
        Most candidates taken from a source (default: ``build.candidates_per_seed``), >= 0.
    weights : dict of str to float
        Weight of a source in the fusion (default 1), finite and >= 0.
    filters : list of str
        Filters applied to every candidate: ``related_categories`` (category scope),
        ``compatibility`` (aspect rules), ``substitutes`` (the seed's own kind).
    fusion : {"rrf", "sequential"}
        ``rrf``: score = sum over proposing sources of ``weight / (rrf_k + rank + 1)``, so
        items proposed by several sources rise; ``sequential``: all of the first source's
        candidates, then the second's, ..., with score ``1 / (rrf_k + position + 1)`` (the
        reciprocal of the candidate's 0-based position in the fused list; ``weights`` do not
        apply).
    rrf_k : float
        Rank offset of the reciprocal-rank fusion (and of the sequential score).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    sources: tuple[str, ...] = DEFAULT_MIX_SOURCES
    limits: dict[str, _Limit] = Field(default_factory=dict)
    weights: dict[str, _Weight] = Field(default_factory=dict)
    filters: tuple[str, ...] = ("compatibility", "substitutes")
    fusion: Literal["rrf", "sequential"] = "rrf"
    rrf_k: float = Field(10.0, ge=0)

    def limit(self, source: str, default: int) -> int:
        return int(self.limits.get(source, default))

    def weight(self, source: str) -> float:
        return float(self.weights.get(source, 1.0))


class MixOverride(BaseModel):
    """A category's changes to the default mix (any key of ``[mix]``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sources: tuple[str, ...] | None = None
    limits: dict[str, _Limit] | None = None
    weights: dict[str, _Weight] | None = None
    filters: tuple[str, ...] | None = None
    fusion: Literal["rrf", "sequential"] | None = None
    rrf_k: float | None = Field(None, ge=0)


class Config(BaseModel):
    """The validated configuration of an :class:`~recset.Engine`.

    Attributes
    ----------
    build : BuildConfig
    sources : dict of str to SourceConfig
        Configured source instances by name (sources named in a mix but not configured here
        get their type's defaults).
    source_types : dict of str to str
        The registered type of each configured instance.
    mix : MixConfig
    categories : dict of str to MixOverride
        Overrides by category id or category path prefix.
    ranker : RankerConfig
        The LightGBM ranker's training windows and hyperparameters.
    neural : NeuralConfig
        The personalization stage (`recset train-neural`): GNN, user encoder, re-ranking.
    type_transition : TypeTransitionConfig
        The type-transition diversification step (`recset train-neural`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    build: BuildConfig = BuildConfig()
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    source_types: dict[str, str] = Field(default_factory=dict)
    mix: MixConfig = MixConfig()
    categories: dict[str, MixOverride] = Field(default_factory=dict)
    ranker: RankerConfig = RankerConfig()
    neural: NeuralConfig = NeuralConfig()
    type_transition: TypeTransitionConfig = TypeTransitionConfig()

    # -- resolved views ------------------------------------------------------------------
    def type_of(self, name: str) -> str:
        return self.source_types.get(name, name)

    def mixes(self) -> dict[str, MixConfig]:
        """The default mix (key ``""``) and each category override merged over it."""
        out = {"": self.mix}
        for key, override in self.categories.items():
            changes = {k: v for k, v in override.model_dump().items() if v is not None}
            out[key] = self.mix.model_copy(update=changes)
        return out

    def source_configs(self) -> dict[str, tuple[str, SourceConfig]]:
        """Every source instance to fit: ``name -> (type, config)``, dependencies included.

        That is the configured instances, every source and filter named in any mix, the
        fallback, and the sources those require (with their type's default config).
        """
        known = registered_recall_sets()
        out: dict[str, tuple[str, SourceConfig]] = {
            n: (self.type_of(n), c) for n, c in self.sources.items()
        }
        wanted = [self.build.fallback]
        for mix in self.mixes().values():
            wanted += list(mix.sources) + list(mix.filters)
        pending = list(dict.fromkeys(wanted))
        while pending:
            name = pending.pop(0)
            if name not in out:
                out[name] = (name, known[name].Config())
            kind = out[name][0]
            needs = list(known[kind].requires)
            cfg = out[name][1]
            if kind == "popular" and getattr(cfg, "scope", "") == "related_categories":
                needs.append("related_categories")
            pending += [r for r in needs if r not in out and r not in pending]
        return out

    def to_dict(self) -> dict[str, Any]:
        srcs = {}
        for name, cfg in sorted(self.sources.items()):
            d = cfg.model_dump(mode="json")
            if self.type_of(name) != name:
                d = {"type": self.type_of(name), **d}
            srcs[name] = d
        return {
            "build": self.build.model_dump(mode="json"),
            "sources": srcs,
            "mix": self.mix.model_dump(mode="json"),
            "categories": {
                k: v.model_dump(mode="json", exclude_none=True)
                for k, v in sorted(self.categories.items())
            },
            "ranker": self.ranker.model_dump(mode="json"),
            "neural": self.neural.model_dump(mode="json"),
            "type_transition": self.type_transition.model_dump(mode="json"),
        }

    def hash(self) -> str:
        """A stable hash of the validated config (stored with artifacts to detect staleness)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def mix_for_categories(
        self, category_ids: NDArray[np.object_], category_paths: NDArray[np.object_]
    ) -> NDArray[np.int32]:
        """Index into ``list(self.mixes())`` of the mix of each category (0 = default).

        A key matches a category when it equals its id, or when it is a prefix of its path at a
        level boundary (``"A > B"`` matches ``"A > B"`` and ``"A > B > C"``). The most specific
        key wins: an id match, then the longest matching path prefix.
        """
        keys = list(self.mixes())[1:]
        out = np.zeros(len(category_ids), dtype=np.int32)
        for i, (cid, path) in enumerate(zip(category_ids, category_paths, strict=True)):
            best, best_len = 0, -1
            for j, key in enumerate(keys, start=1):
                if key == cid:
                    best, best_len = j, 1 << 30
                    break
                if isinstance(path, str) and (path == key or path.startswith(key + " > ")):
                    if len(key) > best_len:
                        best, best_len = j, len(key)
            out[i] = best
        return out


def _format_validation(
    error: ValidationError, where: str, prefix: str, model: type[BaseModel]
) -> str:
    lines = []
    for e in error.errors():
        key = ".".join([prefix, *(str(p) for p in e["loc"])]).strip(".")
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key {key!r}; allowed keys: {_allowed(model, e['loc'])}")
        else:
            lines.append(f"{where}: key {key!r}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _allowed(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at the parent of ``loc`` inside ``model``."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        current = field.annotation
    return sorted(getattr(current, "model_fields", {}))


def _validate(model: type[BaseModel], data: Any, where: str, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: '{prefix}' must be a table. Got {data!r} instead.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, where, prefix, model)) from None


def _check_mix(mix: BaseModel, where: str, prefix: str, names: dict[str, str]) -> None:
    """Every source / filter a mix names must exist (configured, or a registered type)."""
    sources = getattr(mix, "sources", None) or ()
    filters = getattr(mix, "filters", None) or ()
    allowed_sources = sorted(names)
    for s in sources:
        if s not in names:
            raise ConfigError(
                f"{where}: key '{prefix}.sources': unknown source {s!r}; "
                f"allowed values: {allowed_sources}"
            )
    allowed_filters = sorted(n for n, t in names.items() if t in FILTER_TYPES)
    for f in filters:
        if f not in allowed_filters:
            raise ConfigError(
                f"{where}: key '{prefix}.filters': unknown filter {f!r}; "
                f"allowed values: {allowed_filters}"
            )
    for key in ("limits", "weights"):
        for s in getattr(mix, key, None) or {}:
            if s not in names:
                raise ConfigError(
                    f"{where}: key '{prefix}.{key}.{s}': unknown source; "
                    f"allowed values: {allowed_sources}"
                )


def config_from_dict(data: dict[str, Any], *, where: str = "<config>") -> Config:
    """Validate a parsed TOML document into a :class:`Config`."""
    allowed_top = ["build", "categories", "mix", "neural", "ranker", "sources", "type_transition"]
    for key in data:
        if key not in allowed_top:
            raise ConfigError(f"{where}: unknown section {key!r}; allowed sections: {allowed_top}")
    build = _validate(BuildConfig, data.get("build", {}), where, "build")
    known = registered_recall_sets()
    raw_sources = data.get("sources", {})
    if not isinstance(raw_sources, dict):
        raise ConfigError(f"{where}: 'sources' must be a table of source name -> settings")
    sources: dict[str, SourceConfig] = {}
    types: dict[str, str] = {}
    for name, section in raw_sources.items():
        section = dict(section or {})
        kind = section.pop("type", name)
        if kind not in known:
            what = f"'sources.{name}.type' {kind!r}" if kind != name else f"'sources.{name}'"
            raise ConfigError(
                f"{where}: unknown source type {what}; allowed values: {sorted(known)}"
            )
        sources[name] = _validate(known[kind].Config, section, where, f"sources.{name}")
        types[name] = kind
    names = {n: n for n in known} | types
    if build.fallback not in names:
        raise ConfigError(
            f"{where}: key 'build.fallback': unknown source {build.fallback!r}; "
            f"allowed values: {sorted(names)}"
        )
    mix = _validate(MixConfig, data.get("mix", {}), where, "mix")
    _check_mix(mix, where, "mix", names)
    raw_cats = data.get("categories", {})
    if not isinstance(raw_cats, dict):
        raise ConfigError(f"{where}: 'categories' must be a table of category -> mix settings")
    categories: dict[str, MixOverride] = {}
    for key, section in raw_cats.items():
        prefix = f'categories."{key}"'
        categories[key] = _validate(MixOverride, section, where, prefix)
        _check_mix(categories[key], where, prefix, names)
    ranker = _validate(RankerConfig, data.get("ranker", {}), where, "ranker")
    neural = _validate(NeuralConfig, data.get("neural", {}), where, "neural")
    transition = _validate(
        TypeTransitionConfig, data.get("type_transition", {}), where, "type_transition"
    )
    return Config(
        build=build,
        sources=sources,
        source_types=types,
        mix=mix,
        categories=categories,
        ranker=ranker,
        neural=neural,
        type_transition=transition,
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a TOML config file; ``None`` gives the built-in defaults."""
    if path is None:
        return config_from_dict({})
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return config_from_dict(data, where=str(p))
