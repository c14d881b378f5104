"""End-to-end through the ``recset`` command line."""

import json
from pathlib import Path

import pandas as pd
import pytest

from recset.cli import main

from .conftest import run_cli as run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "data"
    main(
        [
            "generate",
            "--items",
            "400",
            "--users",
            "150",
            "--events",
            "12000",
            "--seed",
            "3",
            "--out",
            str(out),
        ]
    )
    return out


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ([], ["generate"], ["ingest"], ["build"], ["recommend"], ["backtest"]):
        code, out, _ = run(capsys, *cmd, "--help")
        assert code == 0 and "Usage:" in out


def test_build_recommend_backtest(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    code, out, err = run(capsys, "build", "--data", str(data_dir), "--store", str(store))
    assert code == 0, err
    assert "engine v1 is active" in out
    seed = pd.read_parquet(data_dir / "catalog.parquet")["item_id"].iloc[0]
    code, out, err = run(
        capsys, "recommend", "--store", str(store), seed, "unknown-item", "--k", "4", "--json"
    )
    assert code == 0, err
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert [x["seed"] for x in lines] == [seed, "unknown-item"]
    for x in lines:
        assert len(x["recommendations"]) == 4
        assert all(r["reasons"] and r["item_id"] != x["seed"] for r in x["recommendations"])
    code, out, err = run(capsys, "recommend", "--store", str(store), "--examples", "2")
    assert code == 0 and out.count("seed ") == 2 and "because:" in out

    report = tmp_path / "bt"
    code, out, err = run(
        capsys, "backtest", "--data", str(data_dir), "--out", str(report), "--store", str(store)
    )
    assert code == 0, err
    assert "| mix | recset |" in out and "| popular | baseline |" in out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["queries"] > 0 and set(metrics["systems"]) >= {"mix", "popular"}
    item = metrics["systems"]["mix"]["item"]
    assert {"hit@1", "hit@10", "hit@20", "ndcg@10", "mrr"} <= set(item)
    assert (report / "report.md").exists()
    assert "recorded as backtest run 1" in out


def test_train_ranker_then_personal_recommendations(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    assert run(capsys, "build", "--data", str(data_dir), "--store", str(store))[0] == 0
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ranker]\nmax_queries = 2000\nn_estimators = 30\n")
    code, out, err = run(
        capsys, "train-ranker", "--data", str(data_dir), "--store", str(store), "--config", str(cfg)
    )
    assert code == 2 and "another config" in err  # the engine was built with the defaults
    assert (
        run(capsys, "build", "--data", str(data_dir), "--store", str(store), "--config", str(cfg))[
            0
        ]
        == 0
    )
    code, out, err = run(
        capsys,
        "train-ranker",
        "--data",
        str(data_dir),
        "--store",
        str(store),
        "--config",
        str(cfg),
        "--report",
        str(tmp_path / "rep"),
    )
    assert code == 0, err
    assert "ranker v1 stored" in out and "feature importance" in out
    assert "validation: hit@1" in out and "(engine v2, ranker v1) is active" in out
    assert (tmp_path / "rep" / "importance.md").exists()
    events = pd.read_parquet(data_dir / "events.parquet")
    seed, user = events["item_id"].iloc[0], events["user_id"].iloc[0]
    code, out, err = run(
        capsys, "recommend", "--store", str(store), seed, "--user", user, "--k", "5", "--json"
    )
    assert code == 0, err
    recs = json.loads(out)["recommendations"]
    assert len(recs) == 5 and all(r["item_id"] != seed for r in recs)


def test_bad_rows_error_then_skip(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "catalog.parquet").write_bytes((data_dir / "catalog.parquet").read_bytes())
    ev = pd.read_parquet(data_dir / "events.parquet")
    ev.loc[5, "event"] = "click"
    ev.loc[7, "item_id"] = "ghost"
    ev.to_parquet(bad / "events.parquet")
    store = tmp_path / "store"
    code, _, err = run(capsys, "build", "--data", str(bad), "--store", str(store))
    assert code == 2
    assert "2 bad rows" in err and "events.parquet: row 6: unknown event 'click'" in err
    assert "row 8: item_id 'ghost' is not in the catalog" in err
    assert not (store / "recset.sqlite").exists()  # nothing written on failure
    code, out, err = run(
        capsys, "build", "--data", str(bad), "--store", str(store), "--on-bad-rows", "skip"
    )
    assert code == 0, err
    q = pd.read_csv(store / "quarantine" / "events.bad-rows.csv")
    assert sorted(q["row"]) == [6, 8]


def test_bad_config_is_named(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sources.co_purchse]\n")
    code, _, err = run(
        capsys,
        "build",
        "--data",
        str(data_dir),
        "--config",
        str(cfg),
        "--store",
        str(tmp_path / "s"),
    )
    assert code == 2 and str(cfg) in err and "co_purchse" in err and "allowed values" in err


def test_generate_refuses_overwrite(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "generate", "--items", "100", "--out", str(data_dir))
    assert code == 2 and str(data_dir) in err


def test_build_checks_category_keys_and_explain_prints_titles(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = tmp_path / "typo.toml"
    cfg.write_text('[categories."Sprots"]\nsources = ["popular"]\n')
    store = tmp_path / "store"
    args = ["build", "--data", str(data_dir), "--store", str(store), "--config", str(cfg)]
    code, _, err = run(capsys, *args)
    assert code == 2 and "Sprots" in err and "nearest: 'Sports'" in err
    assert not (store / "recset.sqlite").exists()
    code, out, err = run(capsys, *args, "--allow-unknown-categories")
    assert code == 0, err
    assert "matches no category" in caplog.text  # the warning
    assert "default mix" in err and '[categories."Sprots"]' in err and " 0 items" in err
    catalog = pd.read_parquet(data_dir / "catalog.parquet")
    seed = catalog["item_id"].iloc[0]
    code, out, err = run(capsys, "explain", seed, "--store", str(store), "--k", "3")
    assert code == 0, err
    titles = dict(zip(catalog["item_id"], catalog["title"], strict=True))
    assert titles[seed] in out.splitlines()[0]
    shown = [line.split()[1] for line in out.splitlines()[2:]]
    assert len(shown) == 3 and all(titles[i][:20] in out for i in shown)


def test_backtest_side_by_side_with_carts(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text('[mix]\nsources = ["co_purchase", "popular"]\n')
    b.write_text(a.read_text() + '[categories."Sports"]\nsources = ["popular"]\n')
    report = tmp_path / "bt"
    code, out, err = run(
        capsys,
        "backtest",
        "--data",
        str(data_dir),
        "--out",
        str(report),
        "--config",
        str(a),
        "--config",
        f"pop_sports={b}",
        "--seeds",
        "prefix",
        "--no-ranker",
        "--no-ablations",
        "--baselines",
        "popular",
        "--bootstrap",
        "50",
    )
    assert code == 0, err
    assert "mix: pop_sports - a = " in out
    md = (report / "report.md").read_text()
    assert "## Side by side" in md and "| Sports |" in md and "## Per cart size" in md
    assert (report / "report.html").exists() and (report / "hit_at_k.png").exists()
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["split"]["seeds"] == "prefix" and "1" in metrics["by_cart_size"]


def test_tune_writes_a_config_that_builds(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "base.toml"
    base.write_text('[mix]\nsources = ["co_purchase", "popular"]\n')
    out = tmp_path / "tuned.toml"
    args = ["tune", "--data", str(data_dir), "--config", str(base), "--out", str(out)]
    code, stdout, err = run(capsys, *args, "--min-queries", "20")
    assert code == 0, err
    assert "validation item Hit@10" in stdout and f"wrote {out}" in stdout
    text = out.read_text()
    assert text.startswith("# recset tune") and base.read_text() in text
    code, _, err = run(capsys, *args)
    assert code == 2 and "--force" in err  # never overwritten silently
    code, _, err = run(
        capsys,
        "build",
        "--data",
        str(data_dir),
        "--store",
        str(tmp_path / "s"),
        "--config",
        str(out),
    )
    assert code == 0, err
