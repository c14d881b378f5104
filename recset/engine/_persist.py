"""An engine version in a store: what is written, and what a load gathers.

The engine's own state (config, item ids) and its mixer are one artifact version; the active
ranker and neural stages are artifacts of their own. Functions here return the parts; the
:class:`~recset.engine.Engine` assembles itself from them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recset.config import Config, config_from_dict
from recset.data import IdMap
from recset.errors import StorageError
from recset.personalization import load_stages
from recset.ranking import Ranker
from recset.recall import Mixer
from recset.storage import read_state, write_state

if TYPE_CHECKING:
    import pandas as pd

    from recset.personalization import Personalizer, TypeTransition

_log = logging.getLogger(__name__)

ENGINE_ARTIFACT = "engine"
FORMAT_VERSION = 3
NEURAL_ARTIFACTS = ("personalizer", "type_transition")


def write_engine(directory: Path, config: Config, items: IdMap, mixer: Mixer) -> None:
    """Write an engine version's files into ``directory`` (the store renames it into place)."""
    # ids as JSON: exact for any string (numpy fixed-width strings drop trailing NULs)
    meta = {
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "items": items.values.tolist(),
    }
    write_state(directory, ENGINE_ARTIFACT, FORMAT_VERSION, meta=meta)
    mixer.save(directory / "mixer")


def read_engine(path: Path, catalog: pd.DataFrame | None) -> tuple[Config, IdMap, Mixer]:
    """The config, item map and mixer of the engine version at ``path``.

    Item availability comes from ``catalog`` (the store's) where it lists an item, so marking
    an item unavailable there takes effect at the next load without a rebuild.
    """
    import pandas as pd

    state = read_state(path, ENGINE_ARTIFACT, FORMAT_VERSION)
    where = str(path / f"{ENGINE_ARTIFACT}.json")
    meta_config, item_ids = state.meta.get("config"), state.meta.get("items")
    if not isinstance(meta_config, dict) or not isinstance(item_ids, list):
        raise StorageError(
            f"{where}: damaged engine metadata (no 'config' table or no 'items' list); "
            "rebuild the engine"
        )
    config = config_from_dict(meta_config, where=where)
    items = IdMap(item_ids)
    mixer = Mixer.load(path / "mixer", config)
    if isinstance(catalog, pd.DataFrame) and len(catalog):
        flags = pd.Series(catalog["available"].to_numpy(bool), index=catalog["item_id"])
        current = flags.reindex(items.values)
        mixer.available = np.where(
            current.isna(), mixer.available, current.fillna(True).to_numpy(bool)
        )
    return config, items, mixer


@dataclass(frozen=True)
class LoadedParts:
    """Everything an engine version serves with, read from a store."""

    config: Config
    items: IdMap
    mixer: Mixer
    ranker: Ranker | None
    personalizer: Personalizer | None
    type_transition: TypeTransition | None


def load_parts(
    target: str | os.PathLike[str],
    *,
    artifact_dir: str | os.PathLike[str] | None,
    version: int | None,
    device: str,
    neural: bool,
) -> LoadedParts:
    """Read the active (or a given) engine version and the active ranker / neural stages."""
    from recset.storage import Store

    with Store.open(target, artifact_dir=artifact_dir, create=False) as store:
        record = (
            store.artifact(ENGINE_ARTIFACT, version)
            if version is not None
            else store.active_artifact(ENGINE_ARTIFACT)
        )
        if record is None:
            raise StorageError(f"{store.url}: no active engine; run `recset build` first")
        path = store.artifact_path(record)
        catalog = store.read_catalog()
        paths: dict[str, Path] = {}
        for name in ("ranker", *(NEURAL_ARTIFACTS if neural else ())):
            rec = store.active_artifact(name)
            if rec is not None:
                paths[name] = store.artifact_path(rec)
    config, items, mixer = read_engine(path, catalog)
    ranker = None
    if "ranker" in paths:
        ranker = Ranker.load(paths["ranker"], sources=mixer.source_order)
    else:
        _log.info("no active ranker in %s: serving the mix's order", store.url)
    neural_paths = {n: p for n, p in paths.items() if n in NEURAL_ARTIFACTS}
    personalizer, transition = load_stages(neural_paths, device, len(items))
    return LoadedParts(config, items, mixer, ranker, personalizer, transition)


def save_engine(
    target: str | os.PathLike[str],
    write: Callable[[Path], None],
    config: Config,
    n_items: int,
    *,
    artifact_dir: str | os.PathLike[str] | None,
    catalog: pd.DataFrame | None,
    metrics: dict[str, Any] | None,
) -> Any:
    """Save a new engine version with ``write`` and make it active; replace the store's
    catalog with ``catalog`` (when given) in the same store session."""
    from recset.storage import Store

    with Store.open(target, artifact_dir=artifact_dir) as store:
        if catalog is not None:
            store.replace_catalog(catalog)
        return store.save_artifact(
            ENGINE_ARTIFACT,
            write,
            params=config.to_dict(),
            config_hash=config.hash(),
            metrics={"n_items": n_items, **(metrics or {})},
        )
