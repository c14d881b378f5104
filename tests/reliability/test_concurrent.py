"""Concurrent builds into one store (issue 12): builds run one at a time; a second one
refuses at once with a message naming the holder, and whatever finishes, the store serves
one whole release (an engine with its own catalog), on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from recset.storage import Store
from recset.testing import releases


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> releases.Prepared:
    return releases.prepare(tmp_path_factory.getbasetemp() / "release-datasets")


@pytest.fixture(scope="module")
def references(
    prepared: releases.Prepared, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, releases.Served]:
    """What a store serves after one clean build of A, and of B."""
    root = tmp_path_factory.mktemp("references")
    out = {}
    for name, engine, ds in (
        ("a", prepared.engine_a, prepared.a),
        ("b", prepared.engine_b, prepared.b),
    ):
        engine.save(root / name, dataset=ds)
        out[name] = releases.served(str(root / name))
    return out


@dataclass(frozen=True)
class Target:
    store: str
    artifact_dir: Path | None
    root: Path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        yield Target(str(tmp_path / "store"), None, tmp_path)
        return
    url = releases.pg_url()
    reason = releases.pg_unreachable_reason(url)
    if reason is not None:
        pytest.skip(f"PostgreSQL is not reachable ({reason})")
    prefix = f"tc{uuid.uuid4().hex[:8]}_"
    try:
        yield Target(releases.with_prefix(url, prefix), tmp_path / "artifacts", tmp_path)
    finally:
        releases.drop_store(url, [prefix])


def _build(prepared: releases.Prepared, target: Target, data: Path, log: str) -> releases.BuildRun:
    return releases.start_build(
        data,
        target.store,
        prepared.config,
        artifact_dir=target.artifact_dir,
        log=target.root / log,
        fork=True,
    )


def test_a_build_refuses_while_another_holds_the_lock(
    target: Target, prepared: releases.Prepared, references: dict[str, releases.Served]
) -> None:
    prepared.engine_a.save(target.store, artifact_dir=target.artifact_dir, dataset=prepared.a)
    with Store.open(target.store, artifact_dir=target.artifact_dir) as st:
        with st.build_lock("the test's build"):
            code, out = _build(prepared, target, prepared.data_b, "refused.log").wait()
    assert code == 2, out
    assert "Another recset process is building into the store" in out
    assert f"the test's build, pid {os.getpid()}" in out
    assert "fit recall sources" not in out  # refused before any work
    now = releases.served(target.store, target.artifact_dir)
    assert (now.versions, now.catalog, now.answers) == (
        {"engine": 1},
        references["a"].catalog,
        references["a"].answers,
    )
    # The lock is free again: the same build now goes through.
    code, out = _build(prepared, target, prepared.data_b, "after.log").wait()
    assert code == 0, out
    now = releases.served(target.store, target.artifact_dir)
    assert (now.catalog, now.answers) == (references["b"].catalog, references["b"].answers)


def test_two_builds_at_once_leave_one_whole_release(
    target: Target, prepared: releases.Prepared, references: dict[str, releases.Served]
) -> None:
    runs = {
        name: _build(prepared, target, data, f"{name}.log")
        for name, data in (("a", prepared.data_a), ("b", prepared.data_b))
    }
    results = {name: run.wait() for name, run in runs.items()}
    done = [name for name, (code, _) in results.items() if code == 0]
    for code, out in results.values():
        assert code == 0 or (code == 2 and "Another recset process is building" in out), out
    assert done, results
    now = releases.served(target.store, target.artifact_dir)
    assert now.versions == {"engine": len(done)}
    # The active engine serves with its own catalog: A's answers with A's catalog, or B's.
    assert any(
        (now.catalog, now.answers) == (references[n].catalog, references[n].answers) for n in done
    )
    assert releases.leftovers(target.store, target.artifact_dir) == []
