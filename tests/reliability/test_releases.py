"""Kill tests (issue 12): a `recset build` that dies at any phase leaves the previous release
serving identical answers, and the next build succeeds without manual cleanup.

Each phase's build runs in its own process with ``RECSET_FAULT=<phase>`` (it ends with
``os._exit``, like a kill); the five kills of a backend run in parallel on five stores, each
holding release A, with dataset B (other availability, other events) as the new build. The
processes are forked from the test process (importing recset again would cost seconds per
kill); one test runs the real `python -m recset.cli build` instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recset.cli import main
from recset.data import catalog_frame
from recset.storage import FAULT_EXIT_CODE, FAULT_PHASES, Store
from recset.testing import releases


@dataclass(frozen=True)
class Fixture(releases.Prepared):
    root: Path


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    root = tmp_path_factory.mktemp("releases")
    data = tmp_path_factory.getbasetemp() / "release-datasets"
    return Fixture(**vars(releases.prepare(data)), root=root)


@dataclass(frozen=True)
class Killed:
    store: str
    artifact_dir: Path | None
    before: releases.Served
    returncode: int
    stderr: str


def _kill_all(fx: Fixture, stores: dict[str, tuple[str, Path | None]]) -> dict[str, Killed]:
    """Save release A into each phase's store, then kill a build of B at that phase."""
    before = {}
    for phase, (store, art) in stores.items():
        fx.engine_a.save(store, artifact_dir=art, dataset=fx.a)
        before[phase] = releases.served(store, art)
    runs = {
        phase: releases.start_build(
            fx.data_b,
            store,
            fx.config,
            artifact_dir=art,
            fault=phase,
            log=fx.root / f"{uuid.uuid4().hex[:8]}-{phase}.log",
            fork=True,
        )
        for phase, (store, art) in stores.items()
    }
    out = {}
    for phase, run in runs.items():
        code, err = run.wait()
        store, art = stores[phase]
        out[phase] = Killed(store, art, before[phase], code, err)
    return out


@pytest.fixture(scope="module")
def killed_sqlite(fx: Fixture) -> dict[str, Killed]:
    return _kill_all(fx, {p: (str(fx.root / f"sqlite-{p}"), None) for p in FAULT_PHASES})


@pytest.fixture(scope="module")
def killed_postgres(fx: Fixture) -> Iterator[dict[str, Killed]]:
    url = releases.pg_url()
    reason = releases.pg_unreachable_reason(url)
    if reason is not None:
        pytest.skip(f"PostgreSQL is not reachable ({reason})")
    prefixes = {p: f"tk{uuid.uuid4().hex[:8]}_" for p in FAULT_PHASES}
    stores = {
        p: (releases.with_prefix(url, prefixes[p]), fx.root / f"pg-{p}") for p in FAULT_PHASES
    }
    try:
        yield _kill_all(fx, stores)
    finally:
        releases.drop_store(url, list(prefixes.values()))


@pytest.fixture(scope="module")
def reference_b(fx: Fixture) -> releases.Served:
    """What a store serves after a clean build of B."""
    store = str(fx.root / "reference-b")
    fx.engine_b.save(store, dataset=fx.b)
    return releases.served(store)


def _check_kill(k: Killed, fx: Fixture, reference: releases.Served, phase: str) -> None:
    assert k.returncode == FAULT_EXIT_CODE, k.stderr
    assert f"fault injected at phase {phase!r}" in k.stderr
    after = releases.served(k.store, k.artifact_dir)
    assert after.versions == k.before.versions == {"engine": 1}
    assert after.catalog == k.before.catalog
    assert after.answers_changed(k.before) == 0
    # The next build succeeds, takes the next version number and leaves nothing behind.
    record = fx.engine_b.save(k.store, artifact_dir=k.artifact_dir, dataset=fx.b)
    assert record.version == 2
    assert releases.leftovers(k.store, k.artifact_dir) == []
    now = releases.served(k.store, k.artifact_dir)
    assert (now.catalog, now.answers) == (reference.catalog, reference.answers)


@pytest.mark.parametrize("phase", FAULT_PHASES)
def test_kill_sqlite(
    killed_sqlite: dict[str, Killed], fx: Fixture, reference_b: releases.Served, phase: str
) -> None:
    _check_kill(killed_sqlite[phase], fx, reference_b, phase)


@pytest.mark.postgres
@pytest.mark.parametrize("phase", FAULT_PHASES)
def test_kill_postgres(
    killed_postgres: dict[str, Killed], fx: Fixture, reference_b: releases.Served, phase: str
) -> None:
    _check_kill(killed_postgres[phase], fx, reference_b, phase)


def test_the_check_sees_a_leaked_catalog(fx: Fixture, reference_b: releases.Served) -> None:
    """Release A's engine served with B's catalog (the bug of issue 12) answers differently,
    and B's release differs from A's: the kill tests would see either."""
    store = str(fx.root / "leak")
    fx.engine_a.save(store, dataset=fx.a)
    clean = releases.served(store)
    with Store.open(store) as st:
        st.replace_catalog(catalog_frame(fx.b))
    assert releases.served(store).answers_changed(clean) > 0
    assert reference_b.answers_changed(clean) > 0


@pytest.mark.slow
def test_cli_build_after_a_kill_between_rename_and_commit(fx: Fixture, tmp_path: Path) -> None:
    """The case of issue 12: the orphan version directory of a dead build no longer makes
    every later `recset build` fit and then fail."""
    store = str(tmp_path / "store")
    fx.engine_a.save(store, dataset=fx.a)
    run = releases.start_build(
        fx.data_b, store, fx.config, fault="rename", log=tmp_path / "build.log"
    )
    code, err = run.wait()
    assert code == FAULT_EXIT_CODE, err
    assert (tmp_path / "store" / "artifacts" / "engine" / "v2").is_dir()  # the orphan
    main([str(a) for a in releases.build_args(fx.data_b, store, fx.config)])
    assert releases.leftovers(store) == []
    with Store.open(store) as st:
        assert st.active_artifact("engine").version == 2  # type: ignore[union-attr]


def test_an_older_version_loads_with_its_own_catalog(fx: Fixture, tmp_path: Path) -> None:
    """`Engine.load(version=1)` after B was released serves A's engine with A's catalog, and
    rolling back makes that the active release again."""
    from recset.engine import Engine

    store = str(tmp_path / "store")
    fx.engine_a.save(store, dataset=fx.a)
    a_answers = releases.served(store).answers
    fx.engine_b.save(store, dataset=fx.b)
    ids = [str(i) for i in fx.a.items.values]
    old = Engine.load(store, version=1, neural=False).recommend_batch(ids, k=10)
    assert [[(r.item_id, float(r.score)) for r in row] for row in old] == a_answers
    with Store.open(store) as st:
        st.activate("engine", 1)
    assert releases.served(store).answers == a_answers
