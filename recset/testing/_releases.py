"""The kill-test harness of atomic releases, shared by the reliability tests and
``bench/reliability_kill.py``.

A *release* is what a store serves: the active engine version with its catalog (and the
active ranker and neural stages). The harness builds release A into a store, runs
``recset build`` of dataset B in a subprocess that dies at a named phase
(``RECSET_FAULT``), and compares what the store serves afterwards with what it served
before: the active versions, the live catalog and every item's top-k answers.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SMALL_CONFIG = """\
# Three cheap sources: the kill tests check storage, not recall quality.
[mix]
sources = ["co_purchase", "co_view", "popular"]
filters = []
"""

DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def pg_url() -> str:
    """The PostgreSQL URL the suite uses (``RECSET_TEST_PG_URL``, else the local server)."""
    return os.environ.get("RECSET_TEST_PG_URL", DEFAULT_PG_URL)


@functools.cache
def pg_unreachable_reason(url: str) -> str | None:
    """None if PostgreSQL answers at ``url``, else why not (checked once per process)."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(_driver(url), connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as e:  # any failure to connect means "skip", with the reason
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {first}"
    return None


def _driver(url: str) -> str:
    """psycopg2 for a bare ``postgresql://`` URL when psycopg (3) is not installed."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def with_prefix(url: str, prefix: str) -> str:
    """``url`` with the store's table prefix as a query parameter (for ``--store``)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}table_prefix={prefix}"


def make_datasets(
    root: Path, *, items: int = 120, users: int = 60, events: int = 2000, seed: int = 1
) -> tuple[Path, Path]:
    """Write dataset A (synthetic) and dataset B under ``root``; return their directories.

    B has A's items with every third one unavailable and the first fifth of A's events
    dropped, so an engine of A served with B's catalog, or B's engine, answers differently.
    """
    import pandas as pd

    from recset.data.synthetic import SyntheticConfig, write_synthetic

    a, b = root / "dataset-a", root / "dataset-b"
    write_synthetic(
        SyntheticConfig(n_items=items, n_users=users, n_events=events, seed=seed), a, force=True
    )
    b.mkdir(parents=True, exist_ok=True)
    catalog = pd.read_parquet(a / "catalog.parquet")
    catalog["available"] = [i % 3 != 0 for i in range(len(catalog))]
    catalog.to_parquet(b / "catalog.parquet", index=False)
    ev = pd.read_parquet(a / "events.parquet")
    ev.iloc[len(ev) // 5 :].to_parquet(b / "events.parquet", index=False)
    shutil.copy(a / "truth.json", b / "truth.json")
    return a, b


@dataclass(frozen=True)
class Prepared:
    """Datasets A and B on disk and loaded, the small config, and an engine of each."""

    data_a: Path
    data_b: Path
    config: Path
    a: Any  # recset.data.Dataset
    b: Any
    engine_a: Any  # recset.engine.Engine
    engine_b: Any


def prepare(root: Path) -> Prepared:
    """Write datasets A and B (unless ``root`` holds them) and the small config under
    ``root``; build an engine of each."""
    from recset.config import load_config
    from recset.data import load_dataset
    from recset.engine import Engine

    data_a, data_b = root / "dataset-a", root / "dataset-b"
    if not (data_b / "truth.json").exists():  # test modules share one copy
        data_a, data_b = make_datasets(root)
    config = root / "small.toml"
    config.write_text(SMALL_CONFIG, encoding="utf-8")
    cfg = load_config(config)
    a, b = load_dataset(data_a), load_dataset(data_b)
    return Prepared(data_a, data_b, config, a, b, Engine.build(a, cfg), Engine.build(b, cfg))


def recset_command(*args: str | os.PathLike[str]) -> list[str]:
    """The argv of ``recset ARGS`` run by this interpreter (so the same recset is used)."""
    return [sys.executable, "-m", "recset.cli", *(os.fspath(a) for a in args)]


def build_args(
    data: Path, store: str, config: Path | None, artifact_dir: Path | None = None
) -> list[str | os.PathLike[str]]:
    """``recset build`` arguments for ``data`` into ``store`` (``config`` None: defaults)."""
    args: list[str | os.PathLike[str]] = ["build", "--data", data, "--store", store]
    if config is not None:
        args += ["--config", config]
    if artifact_dir is not None:
        args += ["--artifact-dir", artifact_dir]
    return args


@dataclass
class BuildRun:
    """A ``recset build`` running in another process; its stdout and stderr go to ``log``."""

    log: Path
    popen: subprocess.Popen[bytes] | None = None
    forked: Any = None  # a multiprocessing Process

    def wait(self, timeout: float = 600) -> tuple[int, str]:
        """Wait for the build; return its exit status and its output."""
        if self.popen is not None:
            code = self.popen.wait(timeout=timeout)
        else:
            self.forked.join(timeout)
            if self.forked.exitcode is None:
                self.forked.kill()
                self.forked.join()
            code = self.forked.exitcode
        return int(code), self.log.read_text(encoding="utf-8", errors="replace")


def _forked_main(argv: list[str], fault: str | None, log: str) -> None:
    """The body of a forked build: the ``recset`` program with its output in ``log``."""
    import runpy

    os.environ.pop("RECSET_FAULT", None)
    if fault is not None:
        os.environ["RECSET_FAULT"] = fault
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process ends below
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    sys.argv = ["recset", *argv]
    code = 0
    try:
        # What `python -m recset.cli ARGV` runs: the program, not an import of its API.
        runpy.run_module("recset.cli", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def start_build(
    data: Path,
    store: str,
    config: Path | None,
    *,
    log: Path,
    artifact_dir: Path | None = None,
    fault: str | None = None,
    fork: bool = False,
) -> BuildRun:
    """Start ``recset build`` of ``data`` into ``store`` in another process, dying at phase
    ``fault`` when given.

    By default a fresh interpreter runs the command (``python -m recset.cli``). With
    ``fork=True`` the process is forked from this one and runs the same entry point, which
    saves the seconds of importing recset again (it must not be used where this process
    runs threads that the child would need).
    """
    argv = [os.fspath(a) for a in build_args(data, store, config, artifact_dir)]
    if fork:
        import multiprocessing

        proc = multiprocessing.get_context("fork").Process(
            target=_forked_main, args=(argv, fault, os.fspath(log))
        )
        proc.start()
        return BuildRun(log, forked=proc)
    env = dict(os.environ)
    env.pop("RECSET_FAULT", None)
    if fault is not None:
        env["RECSET_FAULT"] = fault
    with log.open("wb") as out:
        popen = subprocess.Popen(
            recset_command(*argv), env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return BuildRun(log, popen=popen)


@dataclass(frozen=True)
class Served:
    """What a store serves: active versions, the live catalog, every item's answers."""

    versions: dict[str, int]
    catalog: list[tuple[Any, ...]]
    answers: list[list[tuple[str, float]]]

    def answers_changed(self, other: Served) -> int:
        """How many items' top-k lists differ from ``other``'s."""
        n = max(len(self.answers), len(other.answers))
        pairs = zip(self.answers, other.answers, strict=False)
        return n - sum(a == b for a, b in pairs)


def served(store: str, artifact_dir: Path | None = None, *, k: int = 10) -> Served:
    """Load the store's active release and answer every catalog item's top ``k``."""
    from recset.engine import Engine
    from recset.storage import Store

    with Store.open(store, artifact_dir=artifact_dir, create=False) as st:
        versions = {r.name: r.version for r in st.list_artifacts() if r.status == "active"}
        catalog = st.read_catalog()
    engine = Engine.load(store, artifact_dir=artifact_dir, neural=False)
    seeds = [str(i) for i in catalog["item_id"]] or [str(i) for i in engine.items.values]
    recs = engine.recommend_batch(seeds, k=k)
    return Served(
        versions,
        [tuple(r) for r in catalog.astype(object).itertuples(index=False)],
        [[(r.item_id, float(r.score)) for r in row] for row in recs],
    )


def leftovers(store: str, artifact_dir: Path | None = None) -> list[str]:
    """What a dead build could leave behind and nothing should: temporary directories,
    version directories without a row, staged catalogs no version refers to."""
    from recset.storage import Store

    with Store.open(store, artifact_dir=artifact_dir, create=False) as st:
        out = [str(d) for d in st.artifact_dir.iterdir() if d.name.startswith(".tmp-")]
        known = {r.path for r in st.list_artifacts()}
        out += [
            str(d) for d in st.artifact_dir.glob("*/v*") if f"{d.parent.name}/{d.name}" not in known
        ]
        out += [f"staged catalog {t}" for t in st.staged_catalogs()]
    return out


def _npy(rel: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def tamper(version: Path) -> None:
        import numpy as np

        arr = np.load(version / rel)
        np.save(version / rel, change(arr))

    return tamper


def _truncate(rel: str) -> Callable[[Path], None]:
    def tamper(version: Path) -> None:
        path = version / rel
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return tamper


def _flip_last_byte(rel: str) -> Callable[[Path], None]:
    def tamper(version: Path) -> None:
        raw = bytearray((version / rel).read_bytes())
        raw[-1] ^= 0xFF
        (version / rel).write_bytes(bytes(raw))

    return tamper


def _forge_manifest(version: Path) -> None:
    """Reverse ptr.npy and rewrite its manifest entry to match (the registry still has the
    manifest's own checksum)."""
    import hashlib
    import json

    rel = f"{LISTS}/lists.ptr.npy"
    _npy(rel, lambda a: a[::-1].copy())(version)
    doc = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    doc["files"][rel]["sha256"] = hashlib.sha256((version / rel).read_bytes()).hexdigest()
    (version / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")


LISTS = "mixer/lists"
"""The precomputed lists inside an engine version directory."""


@dataclass(frozen=True)
class Tamper:
    """One way to damage an engine version: ``apply(version_dir)``; ``names`` is the file
    the refusal must name."""

    apply: Callable[[Path], None]
    names: str


def tamper_cases() -> dict[str, Tamper]:
    """The damage the issue found served or crashing, and a few more."""
    import numpy as np

    return {
        "transposed lists.item": Tamper(
            _npy(f"{LISTS}/lists.item.npy", lambda a: np.ascontiguousarray(a.T)), "lists.item.npy"
        ),
        "truncated lists.score": Tamper(_truncate(f"{LISTS}/lists.score.npy"), "lists.score.npy"),
        "reversed lists.ptr": Tamper(
            _npy(f"{LISTS}/lists.ptr.npy", lambda a: a[::-1].copy()), "lists.ptr.npy"
        ),
        "non-monotone lists.ptr": Tamper(
            _npy(f"{LISTS}/lists.ptr.npy", lambda a: np.r_[a[:1], a[2:], a[1:2]]),
            "lists.ptr.npy",
        ),
        "corrupt engine.json": Tamper(
            lambda v: (v / "engine.json").write_bytes(b'{"kind": "engine", "meta": '),
            "engine.json",
        ),
        "flipped byte in a source": Tamper(
            _flip_last_byte("mixer/sources/co_purchase/recall_set.npz"), "recall_set.npz"
        ),
        "deleted lists.src": Tamper(
            lambda v: (v / LISTS / "lists.src.npy").unlink(), "lists.src.npy"
        ),
        "manifest edited to match": Tamper(_forge_manifest, "manifest.json"),
        "manifest deleted": Tamper(lambda v: (v / "manifest.json").unlink(), "manifest.json"),
    }


def drop_store(url: str, prefixes: Sequence[str]) -> None:
    """Drop every table of the stores with ``prefixes`` at ``url`` (test clean-up)."""
    import sqlalchemy as sa

    engine = sa.create_engine(_driver(url))
    try:
        for prefix in prefixes:
            md = sa.MetaData()
            md.reflect(engine, only=lambda name, _md, p=prefix: name.startswith(p))
            md.drop_all(engine)
    finally:
        engine.dispose()


__all__ = [
    "LISTS",
    "SMALL_CONFIG",
    "BuildRun",
    "Prepared",
    "Served",
    "build_args",
    "drop_store",
    "leftovers",
    "make_datasets",
    "pg_unreachable_reason",
    "pg_url",
    "prepare",
    "recset_command",
    "served",
    "start_build",
    "Tamper",
    "tamper_cases",
    "with_prefix",
]
