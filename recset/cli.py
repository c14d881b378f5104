"""The ``recset`` command line: generate, ingest, build, recommend, backtest.

Each command is a thin wrapper over a public function. This is the only module that sets up
logging and the only one that exits the process.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from recset.errors import RecsetError

_log = logging.getLogger("recset.cli")


@contextmanager
def _step(label: str) -> Iterator[None]:
    """Print a stage line with its duration (stages are coarse; loops have their own bars)."""
    click.echo(f"• {label} …", err=True)
    t0 = time.perf_counter()
    yield
    click.echo(f"  done in {time.perf_counter() - t0:.1f}s", err=True)


def _quarantine_dir(store: str | None, fallback: Path) -> Path:
    if store and "://" not in store:
        return Path(store) / "quarantine"
    return fallback / "quarantine"


def _load(data: Path, on_bad_rows: str, quarantine: Path):  # noqa: ANN202
    from recset.data import load_dataset

    with _step(f"load and validate {data}"):
        ds = load_dataset(data, on_bad_rows=on_bad_rows, quarantine_dir=quarantine)  # type: ignore[arg-type]
    if ds.load_report is not None:
        click.echo(f"  {ds.load_report.summary()}", err=True)
    click.echo(f"  {ds!r}", err=True)
    return ds


_on_bad_rows = click.option(
    "--on-bad-rows",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="Stop at bad rows with a summary, or write them to a quarantine file and go on.",
)


def _training_options(sections: str):  # noqa: ANN202
    """--data, --config, --store, --artifact-dir of the commands that train on a built engine."""

    def apply(f):  # noqa: ANN001, ANN202
        for option in reversed(
            [
                click.option(
                    "--data",
                    type=click.Path(path_type=Path),
                    required=True,
                    help="Dataset directory.",
                ),
                click.option(
                    "--config",
                    "config_path",
                    type=click.Path(path_type=Path),
                    default=None,
                    help=f"Config TOML ({sections}; default: built-in defaults).",
                ),
                click.option(
                    "--store", required=True, help="Store holding the engine from `recset build`."
                ),
                click.option(
                    "--artifact-dir",
                    type=click.Path(path_type=Path),
                    default=None,
                    help="Artifact files location when --store is a database URL.",
                ),
            ]
        ):
            f = option(f)
        return f

    return apply


def _built_engine_and_data(data: Path, store: str, artifact_dir: Path | None, on_bad_rows: str):  # noqa: ANN202
    """The store's active engine (without its neural stages) and the dataset it was built on."""
    from recset.engine import Engine

    engine = Engine.load(store, artifact_dir=artifact_dir, neural=False)
    ds = _load(data, on_bad_rows, _quarantine_dir(store, data.parent))
    if ds.items != engine.items:
        raise click.UsageError(
            f"{data} is not the dataset the active engine in {store} was built on (items differ)"
        )
    return engine, ds


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """recset: complementary-product recommendation (frequently bought together)."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option(
    "--items",
    "n_items",
    type=click.IntRange(min=10),
    required=True,
    help="Number of catalog items.",
)
@click.option(
    "--users",
    "n_users",
    type=click.IntRange(min=1),
    default=None,
    help="Number of users (default: derived from --items).",
)
@click.option(
    "--events",
    "n_events",
    type=click.IntRange(min=1),
    default=None,
    help="Approximate number of events (default: 10 per item).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Output dataset directory."
)
@click.option("--force", is_flag=True, help="Replace an existing dataset in --out.")
def generate(
    n_items: int, n_users: int | None, n_events: int | None, seed: int, out: Path, force: bool
) -> None:
    """Generate a synthetic catalog and event log with planted structure (and truth.json)."""
    from recset.data.synthetic import SyntheticConfig, write_synthetic

    cfg = SyntheticConfig(n_items=n_items, n_users=n_users, n_events=n_events, seed=seed)
    with _step(f"generate {n_items:,} items"):
        path = write_synthetic(cfg, out, force=force)
    click.echo(f"wrote {path}/catalog.parquet, events.parquet, truth.json")


@cli.command()
@click.option(
    "--format", "fmt", required=True, help="Source format: complete_journey, instacart or taobao."
)
@click.argument("src", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Output dataset directory (canonical format).",
)
def ingest(fmt: str, src: Path, out: Path) -> None:
    """Convert a public dataset in SRC to the canonical format in --out."""
    from recset.data.loaders import ingest as run_ingest

    with _step(f"ingest {fmt} from {src}"):
        result = run_ingest(fmt, src, out)
    for key, value in result.notes.items():
        click.echo(f"  {key}: {value:,}" if isinstance(value, int) else f"  {key}: {value}")
    click.echo(f"wrote {out} ({len(result.catalog):,} items, {len(result.events):,} events)")


@cli.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Dataset directory (catalog + events).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Config TOML (default: built-in defaults).",
)
@click.option(
    "--store",
    required=True,
    help="Store: a directory (SQLite + artifact files) or a SQLAlchemy URL.",
)
@click.option(
    "--artifact-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where artifact files go when --store is a database URL.",
)
@click.option(
    "--lists-to-db",
    is_flag=True,
    help="Also write every seed's candidate list (with reasons) to the store's recall_list "
    "table, for hosts that read lists with SQL.",
)
@_on_bad_rows
def build(
    data: Path,
    config_path: Path | None,
    store: str,
    artifact_dir: Path | None,
    lists_to_db: bool,
    on_bad_rows: str,
) -> None:
    """Fit the recall sources, precompute every item's candidates, save as the active version."""
    from recset.config import load_config
    from recset.engine import Engine

    config = load_config(config_path)
    ds = _load(data, on_bad_rows, _quarantine_dir(store, data.parent))
    with _step("fit recall sources and precompute candidate lists"):
        engine = Engine.build(ds, config, show_progress=True)
    with _step(f"save to {store}"):
        record = engine.save(store, artifact_dir=artifact_dir, dataset=ds)
    if lists_to_db:
        from recset.storage import Store

        build_id = f"engine-v{record.version}"
        with _step("write candidate lists to the recall_list table"):
            with Store.open(store, artifact_dir=artifact_dir) as st:
                n = st.write_recall_lists(build_id, engine.iter_lists(show_progress=True))
        click.echo(f"  {n:,} lists written as build {build_id!r}", err=True)
    click.echo(f"engine v{record.version} is active in {store}")


@cli.command("train-ranker")
@_training_options("its [ranker] section")
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the feature importance table and plot here.",
)
@_on_bad_rows
def train_ranker_cmd(
    data: Path,
    config_path: Path | None,
    store: str,
    artifact_dir: Path | None,
    report: Path | None,
    on_bad_rows: str,
) -> None:
    """Train the LightGBM ranker and register it as the store's active ranker."""
    from recset.config import load_config
    from recset.ranking import RANKER_ARTIFACT, train_ranker
    from recset.recall import embed_items
    from recset.storage import Store

    config = load_config(config_path)
    engine, ds = _built_engine_and_data(data, store, artifact_dir, on_bad_rows)
    if engine.config.hash() != config.hash():
        raise click.UsageError(
            f"the active engine in {store} was built with another config "
            f"(hash {engine.config.hash()}, this one {config.hash()}); rebuild it or pass the "
            "same --config"
        )
    with _step("text embeddings"):
        emb = embed_items(ds)
    with _step("train the ranker (fit window + label window, features refit on all data)"):
        ranker = train_ranker(ds, config, mixer=engine.mixer, embeddings=emb, show_progress=True)
    engine.with_ranker(ranker)  # the engine's own check: the ranker reads its sources
    importance = ranker.importance()
    metrics = {**ranker.metrics, "importance_gain": dict(importance)}
    with Store.open(store, artifact_dir=artifact_dir) as st:
        record = st.save_artifact(
            RANKER_ARTIFACT,
            ranker.save,
            metrics=metrics,
            params=config.ranker.model_dump(mode="json"),
            config_hash=config.hash(),
        )
    click.echo(f"ranker v{record.version} is active in {store}: {ranker.metrics}")
    click.echo("\nfeature importance (gain), top 15:")
    for name, gain in importance[:15]:
        click.echo(f"  {name:<36} {gain:14.1f}")
    if report is not None:
        from recset.ranking import write_importance

        write_importance(importance, report)
        click.echo(f"importance table and plot in {report}")


@cli.command("train-neural")
@_training_options("its [neural] and [type_transition] sections")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to train: CUDA when available (auto), or forced.",
)
@click.option(
    "--no-type-transition", is_flag=True, help="Train the personalizer only, not the type step."
)
@_on_bad_rows
def train_neural_cmd(
    data: Path,
    config_path: Path | None,
    store: str,
    artifact_dir: Path | None,
    device: str,
    no_type_transition: bool,
    on_bad_rows: str,
) -> None:
    """Train the neural stages (personalization, type transition) and register them.

    The engine in --store then re-ranks its ranker's head for known users and diversifies
    the final list by complementary type. Needs the neural extra (torch, torch_geometric).
    """
    from recset.config import load_config
    from recset.personalization import (
        PERSONALIZER_ARTIFACT,
        TYPE_TRANSITION_ARTIFACT,
        train_personalizer,
        train_type_transition,
    )
    from recset.storage import Store

    config = load_config(config_path)
    engine, ds = _built_engine_and_data(data, store, artifact_dir, on_bad_rows)
    if engine.ranker is not None and engine.ranker.users != ds.users:
        raise click.UsageError(
            f"{data} has other users than the active ranker in {store} was trained on; "
            "retrain the ranker on this dataset first (`recset train-ranker`)"
        )
    with _step("train the personalizer (GNN, user encoder, contrastive)"):
        personal = train_personalizer(
            ds, config.neural.model_copy(update={"device": device}), show_progress=True
        )
    engine.with_stages(personalizer=personal)  # the engine's own check: items and users
    with Store.open(store, artifact_dir=artifact_dir) as st:
        rec = st.save_artifact(
            PERSONALIZER_ARTIFACT,
            personal.save,
            metrics=_jsonable(personal.model.metadata_),
            params=config.neural.model_dump(mode="json"),
            config_hash=config.hash(),
        )
    click.echo(f"personalizer v{rec.version} is active in {store}: {personal.model!r}")
    with Store.open(store, artifact_dir=artifact_dir) as st:
        emb_file = st.artifact_path(rec) / "item_embeddings.npz"
    click.echo(
        f"GNN item embeddings for the gnn_neighbors source: {emb_file} "
        '(set [sources.gnn_neighbors] embeddings = "<that path>")'
    )
    if no_type_transition:
        return
    with _step("train the type-transition step"):
        transition = train_type_transition(
            ds, config.type_transition.model_copy(update={"device": device}), show_progress=True
        )
    with Store.open(store, artifact_dir=artifact_dir) as st:
        rec = st.save_artifact(
            TYPE_TRANSITION_ARTIFACT,
            transition.save,
            params=config.type_transition.model_dump(mode="json"),
            config_hash=config.hash(),
        )
    click.echo(f"type transition v{rec.version} is active in {store}")


def _jsonable(value: object) -> object:
    """``value`` with anything JSON cannot hold turned into a string."""
    import json

    return json.loads(json.dumps(value, default=str))


@cli.command()
@click.argument("seed")
@click.option("--store", required=True, help="Store written by `recset build`.")
@click.option(
    "--artifact-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Artifact files location when --store is a database URL.",
)
@click.option("--k", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def explain(seed: str, store: str, artifact_dir: Path | None, k: int, as_json: bool) -> None:
    """Show SEED's recall mix and every candidate with the score and rank from each source."""
    from recset.engine import Engine

    engine = Engine.load(store, artifact_dir=artifact_dir)
    info = engine.explain(seed, k=k)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    mix = info["mix"]
    where = mix["category_override"] or "default mix"
    if info["precomputed"]:
        state = "precomputed"
    elif info["known"]:
        state = "computed live"
    else:
        state = "unknown seed: cold-start path"
    click.echo(f"seed {seed} ({state}); mix: {where}")
    filters = ", ".join(mix["filters"]) or "-"
    click.echo(
        f"  sources: {', '.join(mix['sources'])}; filters: {filters}; fusion: {mix['fusion']}"
    )
    for i, c in enumerate(info["candidates"], 1):
        why = "; ".join(
            f"{r['source']} #{r['rank'] + 1} score {r['score']:.4g}" for r in c["reasons"]
        )
        click.echo(f"  {i:>3}. {c['item_id']:<14} {c['score']:.4g}  <- {why}")


@cli.command()
@click.argument("seeds", nargs=-1)
@click.option("--store", required=True, help="Store written by `recset build`.")
@click.option(
    "--artifact-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Artifact files location when --store is a database URL.",
)
@click.option("--user", default=None, help="User id, for personalization.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--examples",
    type=click.IntRange(min=0),
    default=0,
    help="Also recommend for this many example seeds taken from the catalog.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of text.")
@click.option(
    "--mode",
    type=click.Choice(["complete", "discover"]),
    default="complete",
    show_default=True,
    help="discover: only complements the --user never bought (needs a ranker trained with "
    "`[ranker] discover = true`).",
)
def recommend(
    seeds: tuple[str, ...],
    store: str,
    artifact_dir: Path | None,
    user: str | None,
    k: int,
    examples: int,
    as_json: bool,
    mode: str,
) -> None:
    """Print recommendations, with their reasons, for SEEDS (item ids)."""
    from recset.engine import Engine
    from recset.storage import Store

    engine = Engine.load(store, artifact_dir=artifact_dir)
    seed_list = list(seeds)
    titles: dict[str, str] = {}
    with Store.open(store, artifact_dir=artifact_dir, create=False) as st:
        catalog = st.read_catalog()
    if len(catalog):
        titles = dict(zip(catalog["item_id"], catalog["title"].fillna(""), strict=True))
    if examples:
        step = max(len(catalog) // (examples + 1), 1)
        seed_list += [str(catalog["item_id"].iloc[i * step]) for i in range(examples)]
    if not seed_list:
        raise click.UsageError("give at least one SEED or --examples N")
    for seed in seed_list:
        recs = engine.recommend(seed, user=user, k=k, mode=mode)  # type: ignore[arg-type]
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "seed": seed,
                        "recommendations": [
                            {
                                "item_id": r.item_id,
                                "score": r.score,
                                "reasons": [vars(x) for x in r.reasons],
                            }
                            for r in recs
                        ],
                    }
                )
            )
            continue
        known = "" if seed in titles else "  (unknown seed: cold-start path)"
        click.echo(f"\nseed {seed}  {titles.get(seed, '')}{known}")
        for i, r in enumerate(recs, 1):
            why = ", ".join(f"{x.source} #{x.rank + 1} ({x.score:.3g})" for x in r.reasons)
            click.echo(
                f"  {i:>2}. {r.item_id:<12} {titles.get(r.item_id, '')[:48]:<48} "
                f"score {r.score:.4g}  because: {why}"
            )


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset directory.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Config TOML (default: built-in defaults).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Report directory (report.md, metrics.json, plots).",
)
@click.option(
    "--split",
    "split_kind",
    type=click.Choice(["time", "leave_last"]),
    default="time",
    show_default=True,
    help="Time split, or each user's last basket held out (for data without dates).",
)
@click.option(
    "--split-date",
    default=None,
    help="Test window start (ISO date or epoch seconds); default: last --test-share of orders.",
)
@click.option("--test-share", type=click.FloatRange(0.01, 0.99), default=0.2, show_default=True)
@click.option(
    "--first-item-only", is_flag=True, help="Only the first-added item of a basket is a seed."
)
@click.option(
    "--max-queries",
    type=click.IntRange(min=1),
    default=None,
    help="Sample this many queries (reproducibly) to bound run time.",
)
@click.option(
    "--baselines",
    default=None,
    help="Comma-separated baseline names (default: all); '' for none.",
)
@click.option("--no-ablations", is_flag=True, help="Skip the per-source ablation systems.")
@click.option("--no-ranker", is_flag=True, help="Skip training and evaluating the ranker.")
@click.option(
    "--neural",
    is_flag=True,
    help="Also train and evaluate the neural stages (GNN neighbours, personalization, "
    "contrastive learning, type transition); needs recset[neural].",
)
@click.option(
    "--explore-share",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Also evaluate mix+ranker+explore: this share of every prefix of the list kept "
    "for items the user never bought (0: skip).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=10),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the confidence intervals.",
)
@click.option("--store", default=None, help="Also record the run in this store.")
@_on_bad_rows
def backtest(
    data: Path,
    config_path: Path | None,
    out: Path,
    split_kind: str,
    split_date: str | None,
    test_share: float,
    first_item_only: bool,
    max_queries: int | None,
    baselines: str | None,
    no_ablations: bool,
    no_ranker: bool,
    explore_share: float,
    neural: bool,
    bootstrap: int,
    store: str | None,
    on_bad_rows: str,
) -> None:
    """Hit@k backtest of the engine, its ablations and the baselines on held-out baskets."""
    from datetime import UTC, datetime

    import pandas as pd

    from recset.config import load_config
    from recset.eval.backtest import format_table, run_backtest, summary_systems, write_report
    from recset.eval.baselines import BASELINES

    config = load_config(config_path)
    t = None
    if split_date is not None:
        try:
            t = (
                int(split_date)
                if split_date.isdigit()
                else int(pd.Timestamp(split_date, tz="UTC").timestamp())
            )
        except ValueError:
            raise click.BadParameter(
                f"{split_date!r} is not a date", param_hint="--split-date"
            ) from None
    names = None
    if baselines is not None:
        names = [b.strip() for b in baselines.split(",") if b.strip()]
        bad = [b for b in names if b not in BASELINES]
        if bad:
            raise click.BadParameter(
                f"unknown baselines {bad}; allowed: {sorted(BASELINES)}", param_hint="--baselines"
            )
    ds = _load(data, on_bad_rows, out)
    started = datetime.now(UTC)
    with _step("backtest"):
        result = run_backtest(
            ds,
            config,
            split=split_kind,  # type: ignore[arg-type]
            t=t,
            test_share=test_share,
            max_queries=max_queries,
            first_item_only=first_item_only,
            baselines=names,
            ablations=not no_ablations,
            ranker=not no_ranker,
            explore_share=explore_share,
            neural=neural,
            n_boot=bootstrap,
            show_progress=True,
        )
    write_report(result, out)
    click.echo(f"\nItem-level Hit@k on {result.queries:,} queries ({out}/report.md has more)\n")
    click.echo(format_table(result, "item", summary_systems(result)))
    for name, ci in result.confidence.items():
        click.echo(f"  {name}: hit@10 {ci['hit@10']:.4f} (95% CI {ci['low']:.4f}-{ci['high']:.4f})")
    if store:
        from recset.storage import Store

        with Store.open(store) as st:
            run_id = st.record_backtest(
                dataset=result.dataset,
                config=config.to_dict(),
                metrics=result.to_json(),
                started_at=started,
                finished_at=datetime.now(UTC),
                report_path=str(out / "report.md"),
            )
        click.echo(f"recorded as backtest run {run_id} in {store}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``recset`` command."""
    try:
        cli.main(args=argv, prog_name="recset", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except RecsetError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
