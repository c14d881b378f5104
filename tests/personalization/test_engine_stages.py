"""The neural stages inside the Engine: serving, CLI training, store round trip, backtest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from recset.config import config_from_dict
from recset.data import Dataset, load_dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.engine import Engine
from recset.recall import get_recall
from recset.testing import recommend_dense

pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from recset.personalization import (  # noqa: E402
    NeuralConfig,
    TypeTransitionConfig,
    train_personalizer,
    train_type_transition,
)

FAST = {
    "device": "cpu",
    "embedding_size": 16,
    "text_embedding_size": 8,
    "gnn_layers": 1,
    "gnn_epochs": 1,
    "joint_epochs": 1,
    "max_triples": 3000,
    "max_history": 5,
    "transformer_layers": 1,
    "transformer_heads": 2,
    "contrastive_batch_size": 16,
    "blend_weight": 0.5,
}
TT_FAST = {"device": "cpu", "epochs": 5, "embedding_size": 8, "hidden_size": 16}


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=500, n_users=150, n_events=12_000, seed=5))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def staged(ds: Dataset) -> Engine:
    engine = Engine.build(ds)
    personal = train_personalizer(ds, NeuralConfig(**FAST))  # type: ignore[arg-type]
    transition = train_type_transition(ds, TypeTransitionConfig(**TT_FAST))  # type: ignore[arg-type]
    return engine.with_stages(personalizer=personal, diversifier=transition)


def _check_rows(batch, seeds: np.ndarray) -> None:  # noqa: ANN001
    for row, seed, score in zip(batch.item, seeds, batch.score, strict=True):
        real = row[row >= 0]
        assert seed not in real
        assert len(np.unique(real)) == len(real)
        assert (row[len(real) :] == -1).all()
        s = score[: len(real)]
        assert (np.diff(s) <= 1e-6).all()  # served scores never rise


def test_staged_engine_serves_valid_lists(ds: Dataset, staged: Engine) -> None:
    seeds = np.arange(60, dtype=np.int32)
    users = (np.arange(60) % ds.n_users).astype(np.int32)
    batch = recommend_dense(staged, seeds, 10, users=users)
    assert batch.item.shape == (60, 10)
    assert ((batch.item >= 0).sum(axis=1) == 10).all()
    _check_rows(batch, seeds)
    # unknown seed and unknown user never raise
    cold = recommend_dense(staged, np.array([-1], np.int32), 5, users=np.array([-1], np.int32))
    assert (cold.item >= 0).sum() == 5


def test_personalization_changes_lists_per_user(ds: Dataset, staged: Engine) -> None:
    only_personal = staged.with_stages(personalizer=staged.personalizer)
    seeds = np.zeros(ds.n_users, dtype=np.int32) + 3
    users = np.arange(ds.n_users, dtype=np.int32)
    batch = recommend_dense(only_personal, seeds, 10, users=users)
    anon = recommend_dense(only_personal, seeds[:1], 10)
    # with a blend weight above 0 the list depends on the user; unknown users keep the base
    assert len({tuple(r) for r in batch.item.tolist()}) > 1
    base = recommend_dense(staged.with_stages(), seeds[:1], 10)
    assert anon.item.tolist() == base.item.tolist()


def test_type_transition_spreads_types(ds: Dataset, staged: Engine) -> None:
    seeds = np.arange(200, dtype=np.int32)
    plain = recommend_dense(staged.with_stages(), seeds, 10)
    diverse = recommend_dense(staged.with_stages(diversifier=staged.diversifier), seeds, 10)
    ptype = ds.catalog.product_type

    def n_types(items: np.ndarray) -> float:
        return float(np.mean([len(set(ptype[r[r >= 0]].tolist())) for r in items]))

    assert n_types(diverse.item) >= n_types(plain.item)
    _check_rows(diverse, seeds)


def test_cli_train_neural_then_recommend(tmp_path: Path, ds: Dataset) -> None:
    from recset.cli import cli

    runner = CliRunner()
    data, store = tmp_path / "d", tmp_path / "s"
    cfg = tmp_path / "fast.toml"
    body = "[neural]\n" + "".join(
        f"{k} = {v!r}\n".replace("'", '"') if isinstance(v, str) else f"{k} = {v}\n"
        for k, v in FAST.items()
        if k != "device"
    )
    body += "\n[type_transition]\n" + "".join(
        f"{k} = {v}\n" for k, v in TT_FAST.items() if k != "device"
    )
    cfg.write_text(body, encoding="utf-8")
    args = ["--items", "300", "--users", "80", "--events", "6000", "--seed", "2"]
    assert runner.invoke(cli, ["generate", *args, "--out", str(data)]).exit_code == 0
    r = runner.invoke(cli, ["build", "--data", str(data), "--store", str(store)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        cli,
        ["train-neural", "--data", str(data), "--store", str(store), "--config", str(cfg)],
    )
    assert "personalizer v1 stored" in r.output and "type transition v1 stored" in r.output
    assert "validation: hit@1 " in r.output, r.output
    if r.exit_code == 3:  # lost to the served engine on validation: stored, not served
        assert "loses to the served engine" in r.output
        assert Engine.load(store, device="cpu").personalizer is None
        for name in ("personalizer", "type_transition"):
            a = runner.invoke(cli, ["activate", "1", "--artifact", name, "--store", str(store)])
            assert a.exit_code == 0, a.output
    else:
        assert r.exit_code == 0, r.output
        assert "(engine v1, personalizer v1, type_transition v1) is active" in r.output
    # the GNN embeddings are an artifact of the neural stage that gnn_neighbors reads
    emb = next((store / "artifacts").rglob("item_embeddings.npz"))
    assert str(emb) in r.output
    gnn = get_recall("gnn_neighbors")
    src = gnn(gnn.Config(embeddings=str(emb))).fit(load_dataset(data))
    assert src.recall_many(np.arange(5, dtype=np.int32), 3).counts().max() == 3
    engine = Engine.load(store, device="cpu")
    assert engine.personalizer is not None and engine.diversifier is not None
    user = engine.personalizer.users.values[0]
    item = engine.items.values[0]
    recs = engine.recommend(str(item), user=str(user), k=5)
    assert len(recs) == 5 and all(r.item_id != item for r in recs)
    # the reloaded personalizer scores exactly as the trained one it was saved from
    again = Engine.load(store, device="cpu")
    assert [r.item_id for r in again.recommend(str(item), user=str(user), k=5)] == [
        r.item_id for r in recs
    ]


@pytest.mark.slow
def test_backtest_neural_systems(tmp_path: Path) -> None:
    from recset.eval.backtest import (
        NEURAL_SYSTEMS,
        NOPERSONAL_SYSTEMS,
        RERANK_SIZES,
        run_backtest,
    )

    syn = generate(SyntheticConfig(n_items=400, n_users=120, n_events=10_000, seed=4))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    cfg = config_from_dict(
        {
            "neural": {k: v for k, v in FAST.items()},
            "type_transition": TT_FAST,
            "ranker": {"n_estimators": 20, "max_queries": 2000},
        }
    )
    result = run_backtest(
        ds, cfg, baselines=[], ablations=False, neural=True, n_boot=10, explore_share=0
    )
    for name in NEURAL_SYSTEMS + NOPERSONAL_SYSTEMS:
        assert name in result.systems
        assert 0 <= result.systems[name]["item"]["hit@10"] <= 1
    assert sorted(int(n) for n in result.rerank_curve) == list(RERANK_SIZES)
    neural = result.split["neural_validation"]
    for val in (result.split["nopersonal_validation"], neural["personalization"]):
        assert val["queries"] > 0 and val["k"] == 10
        assert val["stage_hit"] == max(val["hit_by_weight"].values()) >= val["ranker_hit"]
    # the affinity head does not read the encoder the contrastive loss trains: one model
    assert isinstance(neural["contrastive"], str)
    for level in ("item", "type"):
        assert result.systems[NEURAL_SYSTEMS[1]][level] == result.systems[NEURAL_SYSTEMS[2]][level]
    if neural["personalization"]["weight"] == 0:  # lost on validation: the ranker's lists
        for level in ("item", "type"):
            assert (
                result.systems[NEURAL_SYSTEMS[0]][level] == result.systems[NEURAL_SYSTEMS[1]][level]
            )
