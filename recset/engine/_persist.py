"""An engine version in a store: what is written, and what a load gathers.

The engine's own state (config, item ids) and its mixer are one artifact version; the active
ranker and neural stages are artifacts of their own. Functions here return the parts; the
:class:`~recset.engine.Engine` assembles itself from them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recset.config import Config, config_from_dict
from recset.data import Dataset, IdMap
from recset.errors import StorageError
from recset.personalization import load_stages
from recset.ranking import Ranker
from recset.recall import Mixer
from recset.storage import read_state, write_state

if TYPE_CHECKING:
    import pandas as pd

    from recset.personalization import Personalizer, TypeTransition
    from recset.recall import PairCounter
    from recset.storage import ReleaseRecord, Store

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


def _refuse(path: Path, problem: str) -> StorageError:
    return StorageError(
        f"{path}: {problem}. The engine version is damaged and was not loaded; rebuild it, "
        "or roll back to another version."
    )


def check_structure(path: Path, items: IdMap, mixer: Mixer) -> None:
    """Cheap consistency checks of an engine version's arrays (catches damage the manifest
    cannot, e.g. in a version saved before manifests): every array the right length, the
    precomputed lists' item ids inside the catalog and their reason pointers monotone."""
    n = len(items)
    if mixer.available.shape != (n,):
        raise _refuse(path / "mixer", f"'available' has shape {mixer.available.shape}, not ({n},)")
    lists = mixer.lists
    if lists is None:
        return
    where = path / "mixer" / "lists"
    item, ptr = lists.item, lists.ptr
    if item.ndim != 2 or item.shape[0] > n or lists.score.shape != item.shape:
        raise _refuse(
            where,
            f"the lists have shape item {item.shape} / score {lists.score.shape}, expected "
            f"(n_seeds <= {n}, width) for both",
        )
    if ptr.ndim != 1 or len(ptr) != item.shape[0] + 1:
        raise _refuse(where, f"'ptr' has shape {ptr.shape}, expected ({item.shape[0] + 1},)")
    ranges = lists.value_ranges()  # in blocks: the mapped files do not stay resident
    if item.size and (ranges["item"][0] < -1 or ranges["item"][1] >= n):
        raise _refuse(where, f"the lists hold item ids outside [-1, {n})")
    n_reasons = len(lists.pos)
    if int(ptr[0]) != 0 or int(ptr[-1]) != n_reasons or ranges["ptr_step"][0] < 0:
        raise _refuse(
            where,
            f"'ptr' is not a monotone pointer array from 0 to {n_reasons} (the reasons' count)",
        )
    for name in ("src", "src_score", "src_rank"):
        if len(getattr(lists, name)) != n_reasons:
            raise _refuse(
                where, f"{name!r} has {len(getattr(lists, name))} entries, not {n_reasons}"
            )
    if n_reasons and (ranges["pos"][0] < 0 or ranges["pos"][1] >= item.shape[1]):
        raise _refuse(where, f"'pos' holds positions outside [0, {item.shape[1]})")
    n_src = len(mixer.source_order)
    if n_reasons and (ranges["src"][0] < 0 or ranges["src"][1] >= n_src):
        raise _refuse(where, f"'src' holds source indices outside [0, {n_src})")


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
    try:
        config = config_from_dict(meta_config, where=where)
        items = IdMap(item_ids)
    except (KeyError, TypeError, ValueError) as exc:
        raise _refuse(
            path / f"{ENGINE_ARTIFACT}.json", f"unreadable engine state ({exc!r})"
        ) from None
    mixer = Mixer.load(path / "mixer", config)
    check_structure(path, items, mixer)
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
    release: ReleaseRecord | None


def _release_of_engine(store: Store, version: int) -> int | None:
    """The release to load for engine ``version``: the active one when it pins it, else
    the newest that does (None: no release pins it)."""
    releases = [r for r in store.list_releases() if r.pins["engine"] == version]
    active = [r for r in releases if r.status == "active"]
    return (active or releases or [None])[-1].id if releases else None


def load_parts(
    target: str | os.PathLike[str],
    *,
    artifact_dir: str | os.PathLike[str] | None,
    version: int | None,
    device: str,
    neural: bool,
    release: int | None = None,
) -> LoadedParts:
    """Read a release (the active one; ``release``; or the one pinning engine ``version``)
    and the versions it pins. Neural stages are attached only when the release pins them
    (and ``neural``)."""
    from recset.storage import Store

    with Store.open(target, artifact_dir=artifact_dir, create=False) as store:
        if release is None and version is not None:
            release = _release_of_engine(store, version)
            if release is None:  # an engine no release pins (staged, or a broken save)
                record = store.artifact(ENGINE_ARTIFACT, version)
                catalog = store.read_catalog(record.release) if record.release else None
                path = store.verify_artifact(record)
                config, items, mixer = read_engine(path, catalog)
                return LoadedParts(config, items, mixer, None, None, None, None)
        rel, records, catalog = store.serving_state(release)
        wanted = ("ranker", *(NEURAL_ARTIFACTS if neural else ()))
        path = store.verify_artifact(records[ENGINE_ARTIFACT])
        paths = {n: store.verify_artifact(r) for n, r in records.items() if n in wanted}
    config, items, mixer = read_engine(path, catalog)
    ranker = None
    if "ranker" in paths:
        ranker = Ranker.load(paths["ranker"], sources=mixer.source_order)
    else:
        _log.info("%s pins no ranker: serving the mix's order", rel.describe())
    neural_paths = {n: p for n, p in paths.items() if n in NEURAL_ARTIFACTS}
    personalizer, transition = load_stages(neural_paths, device, len(items))
    return LoadedParts(config, items, mixer, ranker, personalizer, transition, rel)


def save_engine(
    target: str | os.PathLike[str],
    write: Callable[[Path], None],
    config: Config,
    n_items: int,
    *,
    artifact_dir: str | os.PathLike[str] | None,
    catalog: pd.DataFrame | None,
    metrics: dict[str, Any] | None,
    activate: bool = True,
    load_release: Callable[[int], object] | None = None,
) -> Any:
    """Save a new engine version with ``write`` (loaded back once: a version that cannot
    load is refused) and, with ``activate``, make it active together with ``catalog`` (when
    given) in one transaction, under the store's build lock.

    With ``load_release`` the activation is checked as ``recset build`` checks it: the new
    version is staged, a staged release pins it with the ranker and neural stages of the
    active release, ``load_release(release id)`` loads that release as a service would, and
    only when it loads is it activated. When it cannot (typically a ranker trained on other
    sources), the release stays staged, the active release is unchanged, and a
    :class:`~recset.errors.StorageError` says why.
    """
    from recset.errors import RecsetError
    from recset.storage import Store

    def check(directory: Path) -> None:
        read_engine(directory, None)

    with Store.open(target, artifact_dir=artifact_dir) as store:
        with store.build_lock("Engine.save"):
            record = store.save_artifact(
                ENGINE_ARTIFACT,
                write,
                params=config.to_dict(),
                config_hash=config.hash(),
                metrics={"n_items": n_items, **(metrics or {})},
                catalog=catalog,
                check=check,
                activate=activate and load_release is None,
            )
            if not activate or load_release is None:
                return record
            current = store.active_release_record()
            pins = {**(current.pins if current is not None else {}), "engine": record.version}
            staged = store.create_release(pins, activate=False, note="Engine.save")
            try:
                load_release(staged.id)
            except (RecsetError, ImportError) as exc:
                active = "no release" if current is None else current.describe()
                raise StorageError(
                    f"{store.url}: engine v{record.version} is saved and staged in "
                    f"{staged.describe()}, but that release cannot load "
                    f"({type(exc).__name__}: {exc}); {active} stays active. Retrain what it "
                    "names, or activate the engine alone with "
                    f"`recset activate {staged.id}` after fixing it"
                ) from exc
            store.activate_release(staged.id)
            return store.artifact(ENGINE_ARTIFACT, record.version)


@dataclass(frozen=True)
class AppendReport:
    """What ``append_engine`` did: events added, seeds re-mixed, seeds whose reasons were
    rescored per source (their lists kept), rows recomputed per source, wall seconds per
    step."""

    version: int
    n_events: int
    n_seeds: int
    n_remixed: int
    rescored: dict[str, int]
    rows_recomputed: dict[str, int]
    seconds: dict[str, float]


def append_engine(
    target: str | os.PathLike[str],
    events: str | os.PathLike[str],
    *,
    artifact_dir: str | os.PathLike[str] | None = None,
    time_range: tuple[int | None, int | None] | None = None,
    show_progress: bool = False,
    pair_counter: Callable[[Dataset, Path, Config], PairCounter] | None = None,
) -> AppendReport:
    """Add new events to the active engine version's counts and release the result.

    ``events`` is an events file (or a directory holding one) in the canonical format,
    validated like ingest; its items must be in the engine's catalog (new items need a full
    build), its users may be new. Only the candidate rows the new events can change are
    recomputed (see :mod:`recset.recall._incremental`); the result is written as a new
    engine version that one transaction makes active, under the store's build lock, after it
    has been loaded back once. The active ranker and neural stages stay active (they read
    the same sources).

    ``pair_counter(new, events, config)`` (``new``: the validated new events as a dataset
    with the engine's item ids) returns what counts the new groups' pairs of each pair
    source; default: in process. ``recset.spark.SparkPairCounter(session)`` counts them on Spark
    (``recset build --append EVENTS --engine spark``).
    """
    import pandas as pd

    from recset.data import read_events
    from recset.recall import CountState, append_counts
    from recset.storage import Store

    clock = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = round(now - clock, 3)
        clock = now

    with Store.open(target, artifact_dir=artifact_dir, create=False) as store:
        with store.build_lock("recset build --append"):
            active, catalog = store.active_release((ENGINE_ARTIFACT,))
            record = active.get(ENGINE_ARTIFACT)
            if record is None:
                raise StorageError(f"{store.url}: no active engine; run `recset build` first")
            path = store.verify_artifact(record)
            config, items, mixer = read_engine(path, None)
            counts_dir = path / "mixer" / "counts"
            if not counts_dir.exists() or mixer.lists is None:
                raise StorageError(
                    f"{store.url}: engine v{record.version} kept no counts to append to; build "
                    "it with [build] incremental = true (docs/incremental.md)"
                )
            state = CountState.load(counts_dir)
            lap("load engine and counts")
            ids = pd.Series(items.values.astype(object), dtype="string")
            new_events = read_events(
                events,
                ids,
                time_range=time_range,
                catalog_name="the engine's catalog (new items need a full build)",
            )
            # the catalog as the engine was built with it (availability included), in its
            # dense item order
            # object Index.isin hashes Python strings: far faster than Arrow-string isin
            known = pd.Index(catalog["item_id"].astype(object))
            missing = ~pd.Index(ids.astype(object)).isin(known)
            if missing.any():
                raise StorageError(
                    f"{store.url}: the store's catalog lacks {int(missing.sum())} items of "
                    f"engine v{record.version} (first: {ids[missing].head(3).tolist()})"
                )
            cat = catalog.set_index("item_id").reindex(pd.Index(ids, dtype=object))
            cat.index.name = "item_id"
            cat = cat.reset_index()
            cat["available"] = mixer.available
            new = Dataset.from_frames(cat, new_events, name=str(events))
            lap("read and validate events")
            count_pairs = None if pair_counter is None else pair_counter(new, Path(events), config)
            result = append_counts(
                state,
                mixer.sources,
                new,
                config,
                available=mixer.available,
                mixed={n for m in mixer.mixes for n in (*m.sources, *m.filters)},
                where=str(events),
                count_pairs=count_pairs,
            )
            lap("update counts and candidate rows")
            fresh = Mixer(
                result.sources,
                mixer.mixes,
                mixer.seed_mix,
                mixer.source_order,
                fallback=mixer.fallback,
                available=mixer.available,
                max_memory=config.build.max_memory,
            )
            fresh.update_lists(
                mixer.lists, result.seeds, rescored=result.rescored, show_progress=show_progress
            )
            fresh.counts = result.state
            lap("update lists")

            def check(directory: Path) -> None:
                read_engine(directory, None)

            saved = store.save_artifact(
                ENGINE_ARTIFACT,
                lambda d: write_engine(d, config, items, fresh),
                params=config.to_dict(),
                config_hash=config.hash(),
                metrics={
                    "n_items": len(items),
                    "appended_events": len(new_events),
                    "appended_to": record.version,
                    "remixed_seeds": len(result.seeds),
                    "rescored_seeds": {n: len(v) for n, v in result.rescored.items()},
                },
                catalog=catalog,
                check=check,
            )
    lap("save and release")
    return AppendReport(
        saved.version,
        len(new_events),
        len(items),
        len(result.seeds),
        {n: len(v) for n, v in result.rescored.items()},
        result.rows_recomputed,
        seconds,
    )
