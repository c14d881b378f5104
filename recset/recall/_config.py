"""The recall part of the configuration: ``[build]``, ``[sources.NAME]``, ``[mix]``,
``[categories."ID or PATH"]``.

:class:`RecallConfig` is what the recall layer reads (the mixer, the source fit order); the
root :class:`recset.config.Config` extends it with the ranker's and the neural stages'
sections. Source types, filters and their dependencies come from the registry: nothing here
lists them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ByteSize, ConfigDict, Field, TypeAdapter, create_model

from recset.errors import ConfigError
from recset.recall._base import SourceConfig, registered_recall_sets

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
    max_memory : str or int, optional
        Memory budget of a build ("4GiB", "512MiB", bytes): the candidate lists are
        precomputed in seed chunks that fit in what the fitted sources leave of it, and the
        co-occurrence sources compute their similarity in row blocks within it. None: chunks
        of a fixed size. A setting of the machine, not of the model: it is left out of the
        stored config and its hash.
    incremental : bool
        Keep the counts an incremental build (``recset build --append``) adds new events to:
        the co-occurrence count matrices of the pair sources and per-item event counts, saved
        with the engine version (docs/incremental.md). Only some sources support it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    candidates_per_seed: int = Field(100, ge=1, le=10_000)
    fallback: str = "popular"
    half_life_days: float = Field(0.0, ge=0)
    max_group_size: int = Field(100, ge=2)
    max_memory: ByteSize | None = Field(None, gt=0, exclude=True)
    incremental: bool = False


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

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
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

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    sources: tuple[str, ...] | None = None
    limits: dict[str, _Limit] | None = None
    weights: dict[str, _Weight] | None = None
    filters: tuple[str, ...] | None = None
    fusion: Literal["rrf", "sequential"] | None = None
    rrf_k: float | None = Field(None, ge=0)


_UNION: tuple[tuple[tuple[str, type], ...], TypeAdapter[Any]] | None = None


def source_config_union() -> TypeAdapter[Any]:
    """A pydantic discriminated union on ``type`` of every registered source's config.

    Validating ``{"type": kind, **settings}`` with it gives an instance of a subclass of
    ``kind``'s ``Config`` that carries the ``type`` tag (see :func:`validate_source_config`
    for the plain config). Built from the registry, so a plug-in's config takes part as soon
    as it registers.
    """
    global _UNION
    known = tuple((n, c) for n, c in registered_recall_sets().items())
    if _UNION is None or _UNION[0] != known:
        members = [
            create_model(
                f"{cls.Config.__name__}_{name}",
                __base__=cls.Config,
                type=(Literal[name], Field(name, exclude=True)),  # type: ignore[valid-type]
            )
            for name, cls in known
        ]
        union: Any = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
        _UNION = (known, TypeAdapter(Annotated[union, Field(discriminator="type")]))
    return _UNION[1]


def validate_source_config(kind: str, settings: dict[str, Any]) -> SourceConfig:
    """``settings`` of a source of type ``kind`` validated through the discriminated union,
    as an instance of that type's own ``Config`` (``ValidationError`` on bad settings; the
    error locations start with the tag)."""
    entry = source_config_union().validate_python({**settings, "type": kind})
    cls = registered_recall_sets()[kind].Config
    values = {k: getattr(entry, k) for k in cls.model_fields}
    return cls.model_construct(_fields_set=entry.model_fields_set - {"type"}, **values)


class RecallConfig(BaseModel):
    """The recall mix configuration: how sources are built, configured, mixed per category.

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
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    build: BuildConfig = BuildConfig()
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    source_types: dict[str, str] = Field(default_factory=dict)
    mix: MixConfig = MixConfig()
    categories: dict[str, MixOverride] = Field(default_factory=dict)

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
            kind, cfg = out[name]
            needs = known[kind].requirements(cfg)
            pending += [r for r in needs if r not in out and r not in pending]
        return out

    def fit_order(self) -> list[str]:
        """Source names ordered so that every source comes after the types it requires."""
        specs = self.source_configs()
        known = registered_recall_sets()
        done: list[str] = []

        def visit(name: str, stack: tuple[str, ...]) -> None:
            if name in done:
                return
            if name in stack:
                raise ConfigError(
                    f"recall sources depend on each other in a cycle: {stack + (name,)}"
                )
            kind, cfg = specs[name]
            for dep in known[kind].requirements(cfg):
                for other, (other_kind, _) in specs.items():
                    if other_kind == dep:
                        visit(other, stack + (name,))
            done.append(name)

        for name in specs:
            visit(name, ())
        return done

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
