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
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from recset.errors import ConfigError
from recset.personalization import NeuralConfig, TypeTransitionConfig
from recset.pipeline import PipelineConfig, registered_stages
from recset.ranking import RankerConfig
from recset.recall import (
    BuildConfig,
    MixConfig,
    MixOverride,
    RecallConfig,
    SourceConfig,
    registered_recall_sets,
    validate_source_config,
)

__all__ = ["BuildConfig", "Config", "MixConfig", "MixOverride", "config_from_dict", "load_config"]


class Config(RecallConfig):
    """The validated configuration of an :class:`~recset.Engine`: the recall sections of
    :class:`~recset.recall.RecallConfig` plus each later stage's own section.

    Attributes
    ----------
    ranker : RankerConfig
        The LightGBM ranker's training windows and hyperparameters.
    neural : NeuralConfig
        The personalization stage (`recset train-neural`): GNN, user encoder, re-ranking.
    type_transition : TypeTransitionConfig
        The type-transition diversification step (`recset train-neural`).
    pipeline : PipelineConfig
        The serving stages, in order.
    """

    ranker: RankerConfig = RankerConfig()
    neural: NeuralConfig = NeuralConfig()
    type_transition: TypeTransitionConfig = TypeTransitionConfig()
    pipeline: PipelineConfig = PipelineConfig()

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
            "pipeline": self.pipeline.model_dump(mode="json"),
        }

    def hash(self) -> str:
        """A stable hash of the validated config (stored with artifacts to detect staleness)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _format_errors(errors: list[Any], where: str, prefix: str, model: type[BaseModel]) -> str:
    lines = []
    for e in errors:
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
        raise ConfigError(_format_errors(exc.errors(), where, prefix, model)) from None


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
    known = registered_recall_sets()
    allowed_filters = sorted(n for n, t in names.items() if known[t].is_filter)
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


SOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
"""What a ``[sources.NAME]`` name must look like: it names files inside a version directory."""


def _check_finite(value: Any, key: str, where: str) -> None:
    """Refuse ``inf`` / ``nan`` anywhere (TOML allows them; no recset setting means them)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: key {key!r}: must be a finite number. Got {value!r} instead.")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{key}.{k}" if key else str(k), where)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_finite(v, f"{key}[{i}]", where)


def config_from_dict(data: dict[str, Any], *, where: str = "<config>") -> Config:
    """Validate a parsed TOML document into a :class:`Config`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a config is a table of sections. Got {data!r} instead.")
    _check_finite(data, "", where)
    allowed_top = sorted(set(Config.model_fields) - {"source_types"})
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
        if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
            raise ConfigError(
                f"{where}: key 'sources.{name}': a source name must be a letter followed by up "
                f"to 63 letters, digits, '_' or '-' (it names files). Got {name!r} instead."
            )
        if not isinstance(section, dict):
            raise ConfigError(
                f"{where}: key 'sources.{name}' must be a table of settings "
                f"([sources.{name}]). Got {section!r} instead."
            )
        section = dict(section)
        kind = section.pop("type", name)
        if kind not in known:
            what = f"'sources.{name}.type' {kind!r}" if kind != name else f"'sources.{name}'"
            raise ConfigError(
                f"{where}: unknown source type {what}; allowed values: {sorted(known)}"
            )
        try:
            sources[name] = validate_source_config(kind, section)
        except ValidationError as exc:
            # the union's errors start with the tag: the rest is the key inside the section
            errors = [{**e, "loc": e["loc"][1:]} for e in exc.errors()]
            raise ConfigError(
                _format_errors(errors, where, f"sources.{name}", known[kind].Config)
            ) from None
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
    pipeline = _validate(PipelineConfig, data.get("pipeline", {}), where, "pipeline")
    stages = registered_stages()
    for name in pipeline.stages:
        if name not in stages:
            raise ConfigError(
                f"{where}: key 'pipeline.stages': unknown stage {name!r}; "
                f"allowed values: {sorted(stages)}"
            )
    if not pipeline.stages or pipeline.stages[0] != "recall":
        raise ConfigError(
            f"{where}: key 'pipeline.stages': the first stage must be 'recall' (the mix). "
            f"Got {list(pipeline.stages)} instead."
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
        pipeline=pipeline,
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
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: the config file is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "TOML files are UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return config_from_dict(data, where=str(p))
