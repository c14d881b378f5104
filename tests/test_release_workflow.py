"""The release workflow of the command line (issue 15): a build never activates a release
that cannot load, --retrain-ranker / --no-activate, activate and roll back by release id,
prune, ``engine.version``, and the validation gate of the training commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recset import Engine
from recset.cli import NOT_ACTIVATED_EXIT, NotActivated, _gate_and_release
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate, write_synthetic
from recset.eval import HIT1_TOLERANCE, GateResult, compare_on_validation
from recset.storage import Store

from .conftest import run_cli as run

# A ranker that trains in a second or two on this data (the defaults take 300 rounds).
SMALL_RANKER = "[ranker]\nn_estimators = 8\nearly_stopping_rounds = 4\nnum_leaves = 7\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release-data") / "syn"
    write_synthetic(SyntheticConfig(n_items=150, n_users=80, n_events=4000, seed=2), out)
    return out


def _active(store: Path) -> tuple[int, dict[str, int]]:
    with Store.open(store, create=False) as st:
        r = st.active_release_record()
    assert r is not None
    return r.id, r.pins


@pytest.mark.slow
def test_build_train_retrain_activate_roll_back_and_prune(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, small, fewer = tmp_path / "store", tmp_path / "small.toml", tmp_path / "fewer.toml"
    small.write_text(SMALL_RANKER)
    fewer.write_text(SMALL_RANKER + '[mix]\nsources = ["co_purchase", "co_view", "popular"]\n')
    base = ["--data", str(data), "--store", str(store), "--config", str(small)]
    code, out, err = run(capsys, "build", *base)
    assert code == 0 and "release 1 (engine v1)" in out, err
    code, out, err = run(capsys, "train-ranker", *base, "--activate-anyway")
    assert code == 0 and "validation: hit@1 " in out and "release 2 (engine v1, ranker v1)" in out
    # The ranker reads sources the new config no longer mixes: the build is staged, not active.
    args = ["build", "--data", str(data), "--store", str(store), "--config", str(fewer)]
    code, out, err = run(capsys, *args)
    assert code == NOT_ACTIVATED_EXIT, err
    assert "ranker v1 cannot serve engine v2" in err and "--retrain-ranker" in err
    assert "release 2 (engine v1, ranker v1) stays active" in err
    assert _active(store) == (2, {"engine": 1, "ranker": 1})
    engine = Engine.load(store)
    assert engine.version is not None and engine.version.id == 2 and engine.ranker is not None
    # --retrain-ranker: a ranker for the new sources; --no-activate: staged only
    code, out, err = run(capsys, *args, "--retrain-ranker", "--no-activate")
    assert code == 0 and "release 4 (engine v3, ranker v2) is staged" in out, err
    with Store.open(store) as st:  # the release that could not load was not kept
        assert [r.id for r in st.list_releases()] == [1, 2, 3, 4]
    assert _active(store)[0] == 2
    code, out, err = run(capsys, "activate", "3", "--store", str(store))
    assert code == NOT_ACTIVATED_EXIT and "release 2 (engine v1, ranker v1) stays active" in err
    code, out, err = run(capsys, "activate", "4", "--store", str(store))
    assert code == 0 and "release 4 (engine v3, ranker v2) is active" in out, err
    loaded = Engine.load(store)
    assert loaded.version is not None and loaded.version.pins == {"engine": 3, "ranker": 2}
    assert loaded.source_names == ("co_purchase", "co_view", "popular")
    assert len(loaded.recommend(str(loaded.items.values[0]), k=5)) == 5
    code, out, err = run(capsys, "activate", "2", "--store", str(store))  # roll back
    assert code == 0 and _active(store) == (2, {"engine": 1, "ranker": 1}), err
    code, out, err = run(capsys, "versions", "--store", str(store), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["release"], r["engine"], r["ranker"], r["active"]) for r in rows] == [
        (1, 1, None, False),
        (2, 1, 1, True),
        (3, 2, 1, False),
        (4, 3, 2, False),
    ]
    code, out, err = run(capsys, "prune", "--store", str(store), "--keep", "1")
    assert code == 0 and "pruned 2 releases [1, 3]" in out and "engine v2" in out, err
    code, out, _ = run(capsys, "versions", "--store", str(store))
    assert out.splitlines()[0].startswith("* release 2") and len(out.splitlines()) == 2
    assert not (store / "artifacts" / "engine" / "v2").exists()
    assert Engine.load(store).version.id == 2  # type: ignore[union-attr]


def test_a_stage_that_loses_on_validation_is_stored_but_not_activated(tmp_path: Path) -> None:
    syn = generate(SyntheticConfig(n_items=150, n_users=80, n_events=4000, seed=2))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    engine = Engine.build(ds)
    store = tmp_path / "store"
    engine.save(store, dataset=ds)
    # A planted loser: the popular list only, against the full mix.
    gate = compare_on_validation(engine, engine.variant(["popular"]), ds)
    assert gate.queries > 0 and not gate.wins
    assert gate.candidate["hit@10"] < gate.served["hit@10"]
    with Store.open(store) as st:
        staged = st.save_artifact("engine", lambda d: None, activate=False)
        # (a stand-in for a trained stage: any staged version goes through the same gate)
        with pytest.raises(NotActivated, match=r"loses to the served engine.*hit@10 "):
            _gate_and_release(
                st, str(store), None, {"engine": staged.version}, gate, False, "engine v2"
            )
        assert st.active_release_record().pins == {"engine": 1}  # type: ignore[union-attr]
        assert st.artifact("engine", staged.version).status == "staged"
    even = GateResult({"hit@10": 0.5}, {"hit@10": 0.5}, 10)
    assert even.wins and not GateResult({"hit@10": 0.5}, {"hit@10": 0.49}, 10).wins
    # Hit@10 holds but the first slot is traded away: refused beyond the tolerance only
    served = {"hit@1": 0.30, "hit@10": 0.60}
    assert not GateResult(served, {"hit@1": 0.15, "hit@10": 0.61}, 10).wins
    assert not GateResult(served, {"hit@1": 0.30 - HIT1_TOLERANCE - 1e-9, "hit@10": 0.6}, 10).wins
    assert GateResult(served, {"hit@1": 0.30 - HIT1_TOLERANCE / 2, "hit@10": 0.6}, 10).wins


def test_engine_save_activates_only_a_release_that_loads(tmp_path: Path) -> None:
    """``Engine.save`` in Python checks the release as ``recset build`` does: after a ranker
    is pinned, saving an engine that mixes other sources stages it and keeps the previous
    release active (the store still loads), with a message naming the ranker."""
    from recset.config import config_from_dict
    from recset.errors import StorageError
    from recset.ranking import train_ranker

    syn = generate(SyntheticConfig(n_items=150, n_users=80, n_events=4000, seed=2))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    small = {"n_estimators": 8, "early_stopping_rounds": 4, "num_leaves": 7}
    cfg = config_from_dict({"ranker": small})
    store = tmp_path / "store"
    engine = Engine.build(ds, cfg)
    first = engine.save(store, dataset=ds)
    assert first.status == "active"
    ranker = train_ranker(ds, cfg, mixer=engine.mixer)
    with Store.open(store) as st:
        rec = st.save_artifact("ranker", ranker.save, activate=False)
        st.create_release({"engine": first.version, "ranker": rec.version})
    before = _active(store)
    fewer = config_from_dict(
        {"ranker": small, "mix": {"sources": ["co_purchase", "co_view", "popular"]}}
    )
    with pytest.raises(StorageError, match=r"cannot load.*ranker reads sources.*stays active"):
        Engine.build(ds, fewer).save(store, dataset=ds)
    assert _active(store) == before
    assert Engine.load(store).ranker is not None  # the store still loads
    with Store.open(store) as st:
        assert st.artifact("engine", first.version + 1).status == "staged"
    # the same sources load with the ranker: activated, pinning it
    again = Engine.build(ds, cfg).save(store, dataset=ds)
    assert again.status == "active"
    assert _active(store)[1] == {"engine": again.version, "ranker": rec.version}
