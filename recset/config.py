"""Engine configuration: TOML validated into frozen, typed objects at load time.

An unknown section, source or key is a :class:`~recset.errors.ConfigError` naming the file,
the key and the allowed values. ``config/default.toml`` documents every key with its default.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recset.errors import ConfigError
from recset.recall import SourceConfig, registered_recall_sets


class BuildConfig(BaseModel):
    """How the engine is built and served.

    Attributes
    ----------
    candidates_per_seed : int
        Length of the candidate list computed per seed.
    fallback : str
        The source that answers for unknown (cold-start) seeds and fills short lists.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    candidates_per_seed: int = Field(100, ge=1, le=10_000)
    fallback: str = "popular"


class Config(BaseModel):
    """The validated configuration of an :class:`~recset.Engine`.

    Attributes
    ----------
    build : BuildConfig
    sources : dict of str to SourceConfig
        The recall sources to fit, by registered name, each with its own config.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    build: BuildConfig = BuildConfig()
    sources: dict[str, SourceConfig] = Field(default_factory=dict)

    def source_configs(self) -> dict[str, SourceConfig]:
        """Every source to fit, with the fallback always included (default config)."""
        out = dict(self.sources)
        if self.build.fallback not in out:
            out[self.build.fallback] = registered_recall_sets()[self.build.fallback].Config()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "build": self.build.model_dump(mode="json"),
            "sources": {k: v.model_dump(mode="json") for k, v in sorted(self.sources.items())},
        }

    def hash(self) -> str:
        """A stable hash of the validated config (stored with artifacts to detect staleness)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def config_from_dict(data: dict[str, Any], *, where: str = "<config>") -> Config:
    """Validate a parsed TOML document into a :class:`Config`."""
    allowed_top = ["build", "sources"]
    for key in data:
        if key not in allowed_top:
            raise ConfigError(f"{where}: unknown section {key!r}; allowed sections: {allowed_top}")
    try:
        build = BuildConfig.model_validate(data.get("build", {}))
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, where, "build", BuildConfig)) from None
    known = registered_recall_sets()
    if build.fallback not in known:
        raise ConfigError(
            f"{where}: key 'build.fallback': unknown source {build.fallback!r}; "
            f"allowed values: {sorted(known)}"
        )
    raw_sources = data.get("sources", {})
    if not isinstance(raw_sources, dict):
        raise ConfigError(f"{where}: 'sources' must be a table of source name -> settings")
    sources: dict[str, SourceConfig] = {}
    for name, section in raw_sources.items():
        if name not in known:
            raise ConfigError(
                f"{where}: unknown source 'sources.{name}'; allowed values: {sorted(known)}"
            )
        cfg_cls = known[name].Config
        try:
            sources[name] = cfg_cls.model_validate(section or {})
        except ValidationError as exc:
            raise ConfigError(_format_validation(exc, where, f"sources.{name}", cfg_cls)) from None
    return Config(build=build, sources=sources)


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
