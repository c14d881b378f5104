"""Several configs backtested side by side on the same queries: named configs and the
per-category differences (paired bootstrap intervals) for every category a config overrides."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recset.config import Config, config_from_dict, load_config
from recset.data import Dataset
from recset.errors import ConfigError
from recset.eval._result import BacktestResult, paired_difference
from recset.recall import category_names, key_matches

# the systems compared between configs (those a config changes); others are config-independent
COMPARED = ("mix", "mix+ranker")


@dataclass(frozen=True)
class NamedConfig:
    """A config under test: its name in reports, and the file it came from (path, sha256 and
    full text, recorded in the report)."""

    name: str
    config: Config
    path: str | None = None
    sha256: str | None = None
    text: str | None = None

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "sha256": self.sha256}


def default_config() -> NamedConfig:
    return NamedConfig("default", config_from_dict({}), None, None, None)


def named_config(spec: str) -> NamedConfig:
    """``PATH`` (named by the file's stem) or ``NAME=PATH``, loaded and validated."""
    name, sep, path = spec.partition("=")
    if not sep:
        name, path = Path(spec).stem, spec
    if not name:
        raise ConfigError(f"--config {spec!r}: the name before '=' is empty")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {spec!r}: {p} is not a file")
    raw = p.read_bytes()
    return NamedConfig(
        name, load_config(p), str(p), hashlib.sha256(raw).hexdigest(), raw.decode("utf-8")
    )


def named_configs(specs: Sequence[str]) -> list[NamedConfig]:
    """The configs of ``--config`` options (none: the built-in defaults); names must differ."""
    if not specs:
        return [default_config()]
    out = [named_config(s) for s in specs]
    names = [c.name for c in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            f"two --config options have the same name {dup}; name them with NAME=PATH"
        )
    return out


def compare_results(
    results: Sequence[BacktestResult],
    configs: Sequence[NamedConfig],
    train: Dataset,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Item Hit@10 of every config against the first (the reference), on all queries and in
    every category that any config overrides, with paired 95% bootstrap intervals (baskets
    resampled; the queries are the same for every config)."""
    ref = results[0]
    for r in results[1:]:
        if not np.array_equal(r.basket, ref.basket):
            raise ValueError("the results to compare were not computed on the same queries")
    systems = [s for s in COMPARED if all(s in r.hits for r in results)]
    ids, paths = category_names(train)
    qc = ref.query_category

    def rows(sel: np.ndarray) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for s in systems:
            base = ref.hits[s][sel]
            cells = {configs[0].name: {"hit@10": float(base.mean()) if sel.any() else None}}
            for cfg, r in zip(configs[1:], results[1:], strict=True):
                d = paired_difference(
                    base, r.hits[s][sel], ref.basket[sel], n_boot=n_boot, seed=seed
                )
                cells[cfg.name] = {
                    "hit@10": d["b"],
                    "diff": d["diff"],
                    "low": d["low"],
                    "high": d["high"],
                }
            out[s] = cells
        return out

    keys: dict[str, list[str]] = {}
    for cfg in configs:
        for key in cfg.config.categories:
            keys.setdefault(key, []).append(cfg.name)
    categories = []
    for key, owners in keys.items():
        matched = key_matches(key, ids, paths)
        sel = (qc >= 0) & matched[np.maximum(qc, 0)]
        entry: dict[str, Any] = {"key": key, "overridden_by": owners, "queries": int(sel.sum())}
        if sel.any():
            entry["systems"] = rows(sel)
        categories.append(entry)
    everything = np.ones(len(qc), dtype=bool)
    return {
        "reference": configs[0].name,
        "configs": [c.record() for c in configs],
        "systems": systems,
        "all_queries": {"queries": int(len(qc)), "systems": rows(everything)},
        "categories": categories,
    }
