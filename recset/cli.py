"""The ``recset`` command line: generate, ingest, build, recommend, backtest.

Each command is a thin wrapper over a public function. This is the only module that sets up
logging and the only one that exits the process.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from recset.errors import RecsetError

_log = logging.getLogger("recset.cli")

MAX_K = 10_000  # recset.engine.MAX_K (not imported here: `recset --help` stays fast)
MAX_EXAMPLES = 10_000
MAX_BOOTSTRAP = 100_000


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


def _store_reject_chars(store: str | None) -> tuple[str, str]:
    """Characters the store's text columns cannot hold, and why (checked before fitting)."""
    if store and store.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres"):
        return "\x00", "PostgreSQL text columns cannot hold (the store is PostgreSQL)"
    return "", ""


def _load(  # noqa: ANN202
    data: Path,
    on_bad_rows: str,
    quarantine: Path,
    time_range: tuple[int | None, int | None] | None = None,
    store: str | None = None,
):
    from recset.data import load_dataset

    chars, why = _store_reject_chars(store)
    with _step(f"load and validate {data}"):
        ds = load_dataset(
            data,
            on_bad_rows=on_bad_rows,  # type: ignore[arg-type]
            quarantine_dir=quarantine,
            time_range=time_range,
            reject_chars=chars,
            reject_reason=why,
        )
    if ds.load_report is not None:
        click.echo(f"  {ds.load_report.summary()}", err=True)
    click.echo(f"  {ds!r}", err=True)
    return ds


def _bad_rows_options(f):  # noqa: ANN001, ANN202
    """--on-bad-rows and --time-range of the commands that load a dataset."""
    f = click.option(
        "--time-range",
        callback=_parse_time_range,
        default=None,
        metavar="FIRST..LAST",
        help="Plausible event times, inclusive: ISO dates or epoch seconds, either side may be "
        "empty (default: 1970-01-01..now + 1 day). Rows outside are bad rows.",
    )(f)
    return _on_bad_rows_option("rows")(f)


def _on_bad_rows_option(what: str):  # noqa: ANN202
    """--on-bad-rows: stop at bad ``what`` with a summary, or quarantine them and go on."""
    return click.option(
        "--on-bad-rows",
        type=click.Choice(["error", "skip"]),
        default="error",
        show_default=True,
        help=f"Stop at bad {what} with a summary, or write them to a quarantine file and go on.",
    )


def _parse_time(text: str, param: click.Parameter) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        if text.lstrip("-").isdigit():
            return int(text)
        import pandas as pd

        return int(pd.Timestamp(text, tz="UTC").timestamp())
    except (ValueError, OverflowError):
        raise click.BadParameter(
            f"{text!r} is neither an ISO date nor epoch seconds", param=param
        ) from None


def _parse_time_range(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int | None, int | None] | None:
    if value is None:
        return None
    if value.count("..") != 1:
        raise click.BadParameter(
            f"{value!r}: expected FIRST..LAST, e.g. 2015-01-01..2030-01-01 or ..1800000000",
            param=param,
        )
    first, last = (_parse_time(part, param) for part in value.split(".."))
    if first is not None and last is not None and first > last:
        raise click.BadParameter(f"{value!r}: FIRST is after LAST", param=param)
    return first, last


def _not_a_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """An output directory option must not name an existing file (it would be written over)."""
    if value is not None and value.exists() and not value.is_dir():
        raise click.BadParameter(
            f"{value} is an existing file; give a directory (it is not written over)",
            param=param,
        )
    return value


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
                    type=str,
                    default=None,
                    help="Artifact files directory of a database store that keeps them on a "
                    "filesystem (not needed when they are in the database or at a URL).",
                ),
            ]
        ):
            f = option(f)
        return f

    return apply


def _store_locked(purpose: str):  # noqa: ANN202
    """Run a command (with --store, --artifact-dir) holding the store's build lock, so that
    it never trains on an engine a concurrent build is replacing."""

    def wrap(f):  # noqa: ANN001, ANN202
        @functools.wraps(f)
        def run(**kwargs):  # noqa: ANN003, ANN202
            from recset.storage import Store

            target, artifact_dir = kwargs["store"], kwargs["artifact_dir"]
            with Store.open(target, artifact_dir=artifact_dir, create=False) as st:
                with st.build_lock(purpose):
                    return f(**kwargs)

        return run

    return wrap


def _built_engine_and_data(  # noqa: ANN202
    data: Path,
    store: str,
    artifact_dir: str | None,
    on_bad_rows: str,
    time_range: tuple[int | None, int | None] | None,
):
    """The store's active engine (without its neural stages) and the dataset it was built on."""
    from recset.engine import Engine

    engine = Engine.load(store, artifact_dir=artifact_dir, neural=False)
    ds = _load(data, on_bad_rows, _quarantine_dir(store, data.parent), time_range)
    if ds.items != engine.items:
        raise click.UsageError(
            f"{data} is not the dataset the active engine in {store} was built on (items differ)"
        )
    return engine, ds


def _progress_lines() -> None:
    """Show the ``recset.progress`` lines (a stage's time and memory, a long loop every few
    seconds: plain lines, fit for a log file) whatever the -v level."""
    progress = logging.getLogger("recset.progress")
    if progress.getEffectiveLevel() > logging.INFO:
        progress.setLevel(logging.INFO)


NOT_ACTIVATED_EXIT = 3
"""Exit status of a build or training run whose result was stored but not activated."""


class NotActivated(click.ClickException):
    """The new version was stored (staged) but the active release was left as it was."""

    exit_code = NOT_ACTIVATED_EXIT

    def show(self, file=None) -> None:  # noqa: ANN001
        click.echo(f"not activated: {self.message}", err=True)


def _load_problem(store: str, artifact_dir: str | None, release: int) -> str | None:
    """Why release ``release`` cannot load (None: it loads), as a service would load it."""
    from recset.engine import Engine

    try:
        Engine.load(store, artifact_dir=artifact_dir, release=release)
    except (RecsetError, ImportError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _describe_active(st) -> str:  # noqa: ANN001
    current = st.active_release_record()
    return "no release" if current is None else current.describe()


def _activate_checked(st, store: str, artifact_dir: str | None, pins: dict[str, int], note: str):  # noqa: ANN001, ANN202
    """Record a release pinning ``pins``, load it as a service would, and activate it only
    when it loads (else NotActivated, naming why; the release stays staged)."""
    staged = st.create_release(pins, activate=False, note=note)
    problem = _load_problem(store, artifact_dir, staged.id)
    if problem is not None:
        raise NotActivated(
            f"{staged.describe()} is staged but cannot load ({problem}); "
            f"{_describe_active(st)} stays active"
        )
    return st.activate_release(staged.id)


def _validation_share_option(f):  # noqa: ANN001, ANN202
    f = click.option(
        "--activate-anyway",
        is_flag=True,
        help="Activate the new stage even when it loses to the served engine on validation.",
    )(f)
    return click.option(
        "--validation-share",
        type=click.FloatRange(0.01, 0.5),
        default=0.1,
        show_default=True,
        help="Share of the latest training baskets the new stage is compared on against the "
        "served engine (it is activated only when its item Hit@10 is not lower).",
    )(f)


def _gate_and_release(
    st,  # noqa: ANN001
    store: str,
    artifact_dir: str | None,
    candidate_pins: dict[str, int],
    gate,  # noqa: ANN001
    activate_anyway: bool,
    what: str,
) -> None:
    """Activate a release with ``candidate_pins`` when the gate passes (or anyway)."""
    click.echo(f"validation: {gate.describe()}")
    current = st.active_release_record()
    pins = {**(current.pins if current else {}), **candidate_pins}
    if not gate.wins and not activate_anyway:
        raise NotActivated(
            f"{what} is stored (staged) but loses to the served engine on the validation "
            f"window ({gate.describe()}); {_describe_active(st)} stays active. Pass "
            "--activate-anyway to serve it regardless"
        )
    release = _activate_checked(st, store, artifact_dir, pins, what)
    click.echo(f"{release.describe()} is active in {store}")


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
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    callback=_not_a_file,
    help="Output dataset directory.",
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
    callback=_not_a_file,
    help="Output dataset directory (canonical format).",
)
@click.option("--force", is_flag=True, help="Replace a dataset already in --out.")
def ingest(fmt: str, src: Path, out: Path, force: bool) -> None:
    """Convert a public dataset in SRC to the canonical format in --out."""
    from recset.data.loaders import ingest as run_ingest

    with _step(f"ingest {fmt} from {src}"):
        result = run_ingest(fmt, src, out, force=force)
    for key, value in result.notes.items():
        click.echo(f"  {key}: {value:,}" if isinstance(value, int) else f"  {key}: {value}")
    click.echo(f"wrote {out} ({len(result.catalog):,} items, {len(result.events):,} events)")


@cli.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset directory (catalog + events); required unless --append.",
)
@click.option(
    "--append",
    "append_events",
    type=click.Path(path_type=Path),
    default=None,
    help="Add these new events (an events file, or a directory holding one) to the active "
    "engine's counts and release the result as a new version, instead of a full build; the "
    "engine must have been built with [build] incremental = true (docs/incremental.md).",
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
    type=str,
    default=None,
    help="Where artifact files go: a directory, 'db' (in the database itself) or an fsspec "
    "URL (file://, memory://, s3://...; recorded in the store, so loading machines need only "
    "--store). Default for a new database store: 'db'.",
)
@click.option(
    "--lists-to-db",
    is_flag=True,
    help="Also write every seed's candidate list (with reasons) to the store's recall_list "
    "table, for hosts that read lists with SQL.",
)
@click.option(
    "--max-memory",
    default=None,
    help="Memory budget of the build, e.g. 4GiB or 512MiB (overrides [build] max_memory): "
    "lists are precomputed in seed chunks and similarities in row blocks that fit in it.",
)
@click.option(
    "--allow-unknown-categories",
    is_flag=True,
    help="Warn about a [categories] key that matches no category instead of stopping.",
)
@click.option(
    "--no-activate",
    is_flag=True,
    help="Stage the new release (checked that it loads) without activating it "
    "(`recset activate RELEASE` later).",
)
@click.option(
    "--retrain-ranker",
    is_flag=True,
    help="When the active ranker cannot serve the new engine (its sources changed), retrain "
    "it on the same data and config and pin it in the new release.",
)
@click.option(
    "--drop-neural",
    is_flag=True,
    help="Do not pin the active neural stages in the new release.",
)
@click.option(
    "--engine",
    "engine_kind",
    type=click.Choice(["inprocess", "spark"]),
    default="inprocess",
    show_default=True,
    help="spark: compute the behaviour signals, the co_purchase, co_view and co_purchase_only "
    "candidate rows and the counts of popular and related_categories on Apache Spark from "
    "events.parquet (extra recset[spark], Java 17; docs/scale.md); the other sources are "
    "fitted in process. With --append: the new "
    "events' pairs are counted on Spark (the merge and the affected rows run in process).",
)
@click.option(
    "--spark-master",
    default="local[*]",
    show_default=True,
    help="Spark master URL of --engine spark (e.g. spark://host:7077, yarn).",
)
@click.option(
    "--spark-conf",
    multiple=True,
    metavar="KEY=VALUE",
    help="Spark setting of --engine spark, repeatable (e.g. spark.driver.memory=8g).",
)
@_bad_rows_options
def build(
    data: Path | None,
    append_events: Path | None,
    config_path: Path | None,
    store: str,
    artifact_dir: str | None,
    lists_to_db: bool,
    max_memory: str | None,
    allow_unknown_categories: bool,
    no_activate: bool,
    retrain_ranker: bool,
    drop_neural: bool,
    engine_kind: str,
    spark_master: str,
    spark_conf: tuple[str, ...],
    on_bad_rows: str,
    time_range: tuple[int | None, int | None] | None,
) -> None:
    """Fit the recall sources, precompute every item's candidates, release the new engine.

    The new engine version is staged in a new release with the ranker and neural stages of
    the active release; the release is activated only once it loads as a service would load
    it. When it cannot (the active ranker reads sources the new engine no longer mixes), the
    ranker is retrained with --retrain-ranker; otherwise the previous release stays active
    and the command exits with status 3, saying why.

    A [categories] key that matches no category id or path prefix of the catalog stops the
    build with the nearest existing names (--allow-unknown-categories: a warning).

    With --append EVENTS, the new events are added to the counts the active engine kept
    ([build] incremental = true) and only the affected lists are recomputed
    (docs/incremental.md).
    """
    from recset.config import load_config
    from recset.engine import Engine
    from recset.progress import parse_memory
    from recset.recall import check_category_keys, mix_item_counts
    from recset.storage import Store, fault_point

    if append_events is not None:
        if data is not None or config_path is not None or lists_to_db or on_bad_rows != "error":
            raise click.UsageError(
                "--append adds events to the stored engine with its config and refuses bad "
                "rows: it takes no --data, --config, --lists-to-db or --on-bad-rows skip"
            )
        if engine_kind == "spark" and time_range is not None:
            raise click.UsageError(
                "--append --engine spark counts every event of the file on Spark: it takes no "
                "time range (cut the file, or append in process)"
            )
        spark = _spark_options(spark_master, spark_conf) if engine_kind == "spark" else None
        _append(store, append_events, artifact_dir, time_range, spark)
        return
    if data is None:
        raise click.UsageError("Missing option '--data' (or '--append EVENTS').")
    config = load_config(config_path)
    spark = _spark_options(spark_master, spark_conf) if engine_kind == "spark" else None
    if max_memory is not None:
        budget = parse_memory(max_memory)
        config = config.model_copy(
            update={"build": config.build.model_copy(update={"max_memory": budget})}
        )
    _progress_lines()
    ds = _load(data, on_bad_rows, _quarantine_dir(store, data.parent), time_range, store)
    # Checked before the store is opened: a config that cannot build creates no store.
    check_category_keys(config, ds, allow_unknown=allow_unknown_categories)
    # The build lock before the fit: a second build into this store refuses at once.
    with Store.open(store, artifact_dir=artifact_dir) as st, st.build_lock("recset build"):
        prefitted = None
        if spark is not None:
            with _step(f"fit the behavioural sources on Spark ({spark_master})"):
                prefitted = _spark_fit(spark, data, ds, config)
        with _step("fit recall sources and precompute candidate lists"):
            engine = Engine.build(
                ds, config, show_progress=True, allow_unknown_categories=True, prefitted=prefitted
            )
        fault_point("fit")
        counts = mix_item_counts(config, engine.mixer.seed_mix)
        click.echo("  items served by each mix:", err=True)
        for key, n in counts.items():
            name = f"[categories.{json.dumps(key)}]" if key else "default mix"
            click.echo(f"    {name:<48} {n:>9,} items", err=True)
        with _step(f"save to {store}"):
            record = engine.save(store, artifact_dir=artifact_dir, dataset=ds, activate=False)
        if lists_to_db:
            build_id = f"engine-v{record.version}"
            with _step("write candidate lists to the recall_list table"):
                n = st.write_recall_lists(build_id, engine.iter_lists(show_progress=True))
            click.echo(f"  {n:,} lists written as build {build_id!r}", err=True)
        release = _release_build(
            st, store, artifact_dir, record.version, engine, ds, config, retrain_ranker, drop_neural
        )
        if no_activate:
            click.echo(
                f"{release.describe()} is staged in {store} (`recset activate {release.id}`)"
            )
            return
        release = st.activate_release(release.id)
    click.echo(f"engine v{record.version} is active in {store}: {release.describe()}")


def _release_build(  # noqa: ANN202
    st,  # noqa: ANN001
    store: str,
    artifact_dir: str | None,
    version: int,
    engine,  # noqa: ANN001
    ds,  # noqa: ANN001
    config,  # noqa: ANN001
    retrain_ranker: bool,
    drop_neural: bool,
):
    """Stage a release of engine ``version`` with the active ranker and neural stages, check
    that it loads (retraining the ranker when asked and needed); NotActivated when not."""
    from recset.storage import RELEASE_STAGES

    current = st.active_release_record()
    pins = {"engine": version}
    if current is not None:
        skip = ("engine", *(("personalizer", "type_transition") if drop_neural else ()))
        pins.update({n: v for n, v in current.pins.items() if n not in skip})
    release = st.create_release(pins, activate=False, note="recset build")
    problem = _load_problem(store, artifact_dir, release.id)
    if problem is not None and "ranker" in pins:
        # the ranker's own checks name it ("the ranker reads sources ...", its files)
        ranker_is_it = "ranker" in problem
        if ranker_is_it and retrain_ranker:
            pins["ranker"] = _train_and_stage_ranker(st, engine, ds, config)
            st.drop_staged_release(release.id)  # the release that could not load
            release = st.create_release(pins, activate=False, note="recset build --retrain-ranker")
            problem = _load_problem(store, artifact_dir, release.id)
        elif ranker_is_it:
            problem += (
                f" — ranker v{pins['ranker']} cannot serve engine v{version}; rebuild with "
                "--retrain-ranker to retrain it on this data"
            )
    if problem is not None:
        neural = [n for n in RELEASE_STAGES[2:] if n in pins]
        hint = f"; or pass --drop-neural (pinned: {neural})" if neural else ""
        raise NotActivated(
            f"engine v{version} is staged in {release.describe()} but that release cannot "
            f"load: {problem}{hint}. {_describe_active(st)} stays active"
        )
    return release


def _train_and_stage_ranker(st, engine, ds, config) -> int:  # noqa: ANN001
    """Train a ranker for ``engine`` on ``ds`` (the build's data and config); stage it."""
    from recset.ranking import RANKER_ARTIFACT, train_ranker
    from recset.recall import embed_items

    with _step("text embeddings"):
        emb = embed_items(ds)
    with _step("retrain the ranker for the new engine (--retrain-ranker)"):
        ranker = train_ranker(ds, config, mixer=engine.mixer, embeddings=emb, show_progress=True)
    engine.with_ranker(ranker)
    record = st.save_artifact(
        RANKER_ARTIFACT,
        ranker.save,
        metrics=ranker.metrics,
        params=config.ranker.model_dump(mode="json"),
        config_hash=config.hash(),
        activate=False,
    )
    click.echo(f"  ranker v{record.version} staged: {ranker.metrics}", err=True)
    return int(record.version)


def _append(
    store: str,
    events: Path,
    artifact_dir: Path | None,
    time_range: tuple[int | None, int | None] | None,
    spark: tuple[str, dict[str, str]] | None,
) -> None:
    from contextlib import nullcontext

    from recset.engine import append_engine

    _progress_lines()
    where = "" if spark is None else f" (new pairs counted on Spark, {spark[0]})"
    with _step(f"append {events} to the engine in {store}{where}"):
        if spark is None:
            session_cm = nullcontext(None)
        else:
            from recset.spark import owned_session

            session_cm = owned_session(*spark)
        with session_cm as session:
            counter = None
            if session is not None:
                from recset.spark import SparkPairCounter

                counter = SparkPairCounter(session)
            rep = append_engine(
                store,
                events,
                artifact_dir=artifact_dir,
                time_range=time_range,
                show_progress=True,
                pair_counter=counter,
            )
    click.echo(
        f"  {rep.n_events:,} events added; {rep.n_remixed:,} of {rep.n_seeds:,} lists mixed "
        f"anew; reasons rescored per source: {rep.rescored}; rows recomputed per source: "
        f"{rep.rows_recomputed}",
        err=True,
    )
    click.echo(f"engine v{rep.version} is active in {store}")


def _spark_options(master: str, pairs: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """(master, conf) of ``--engine spark``, checked before anything is read."""
    from recset.spark import parse_conf, spark_missing

    conf = parse_conf(pairs)
    why = spark_missing()
    if why is not None:
        raise click.ClickException(f"--engine spark: {why}")
    return master, conf


def _spark_fit(spark: tuple[str, dict[str, str]], data: Path, ds, config):  # noqa: ANN001, ANN202
    from recset.spark import fit_behaviour_sources, owned_session

    with owned_session(*spark) as session:
        return fit_behaviour_sources(session, data, ds, config)


@cli.command("train-ranker")
@_training_options("its [ranker] section")
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the feature importance table and plot here.",
)
@_validation_share_option
@_bad_rows_options
@_store_locked("recset train-ranker")
def train_ranker_cmd(
    data: Path,
    config_path: Path | None,
    store: str,
    artifact_dir: str | None,
    report: Path | None,
    validation_share: float,
    activate_anyway: bool,
    on_bad_rows: str,
    time_range: tuple[int | None, int | None] | None,
) -> None:
    """Train the LightGBM ranker; activate it in a new release when it serves better.

    The ranker is always stored. It becomes part of the active release only when the engine
    with it does at least as well (item Hit@10) as the served engine on the latest
    --validation-share of the training baskets (or with --activate-anyway); otherwise the
    command prints both engines' figures and exits with status 3.
    """
    from recset.config import load_config
    from recset.engine import Engine
    from recset.eval import compare_on_validation
    from recset.ranking import RANKER_ARTIFACT, train_ranker
    from recset.recall import embed_items
    from recset.storage import Store

    config = load_config(config_path)
    engine, ds = _built_engine_and_data(data, store, artifact_dir, on_bad_rows, time_range)
    if engine.config.hash() != config.hash():
        raise click.UsageError(
            f"the active engine in {store} was built with another config "
            f"(hash {engine.config.hash()}, this one {config.hash()}); rebuild it or pass the "
            "same --config"
        )
    with _step("text embeddings"):
        emb = embed_items(ds)
    _progress_lines()
    with _step("train the ranker (fit window + label window, features refit on all data)"):
        ranker = train_ranker(ds, config, mixer=engine.mixer, embeddings=emb, show_progress=True)
    engine.with_ranker(ranker)  # the engine's own check: the ranker reads its sources
    importance = ranker.importance()
    metrics = {**ranker.metrics, "importance_gain": dict(importance)}
    click.echo("feature importance (gain), top 15:")
    for name, gain in importance[:15]:
        click.echo(f"  {name:<36} {gain:14.1f}")
    if report is not None:
        from recset.ranking import write_importance

        write_importance(importance, report)
        click.echo(f"importance table and plot in {report}")
    with _step("compare with the served engine on the validation window"):
        served = Engine.load(store, artifact_dir=artifact_dir)
        gate = compare_on_validation(served, served.with_ranker(ranker), ds, share=validation_share)
    with Store.open(store, artifact_dir=artifact_dir) as st:
        record = st.save_artifact(
            RANKER_ARTIFACT,
            ranker.save,
            metrics={**metrics, "gate": gate.to_json()},
            params=config.ranker.model_dump(mode="json"),
            config_hash=config.hash(),
            activate=False,
        )
        click.echo(f"ranker v{record.version} stored: {ranker.metrics}")
        _gate_and_release(
            st,
            store,
            artifact_dir,
            {"ranker": record.version},
            gate,
            activate_anyway,
            f"ranker v{record.version}",
        )


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
@_validation_share_option
@_bad_rows_options
@_store_locked("recset train-neural")
def train_neural_cmd(
    data: Path,
    config_path: Path | None,
    store: str,
    artifact_dir: str | None,
    device: str,
    no_type_transition: bool,
    validation_share: float,
    activate_anyway: bool,
    on_bad_rows: str,
    time_range: tuple[int | None, int | None] | None,
) -> None:
    """Train the neural stages (personalization, type transition); activate them in a new
    release only when they serve better.

    With them, the engine re-ranks its ranker's head for known users and diversifies the
    final list by complementary type. They are always stored, but pinned in the active
    release only when the engine with them does at least as well (item Hit@10) as the served
    engine on the latest --validation-share of the training baskets (or with
    --activate-anyway); otherwise the command prints both engines' figures and exits with
    status 3. Needs the neural extra (torch, torch_geometric).
    """
    from recset.config import load_config
    from recset.engine import Engine
    from recset.eval import compare_on_validation
    from recset.personalization import (
        PERSONALIZER_ARTIFACT,
        TYPE_TRANSITION_ARTIFACT,
        train_personalizer,
        train_type_transition,
    )
    from recset.storage import Store

    config = load_config(config_path)
    engine, ds = _built_engine_and_data(data, store, artifact_dir, on_bad_rows, time_range)
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
    transition = None
    if not no_type_transition:
        with _step("train the type-transition step"):
            transition = train_type_transition(
                ds,
                config.type_transition.model_copy(update={"device": device}),
                show_progress=True,
            )
    with _step("compare with the served engine on the validation window"):
        served = Engine.load(store, artifact_dir=artifact_dir)
        candidate = served.with_stages(
            personalizer=personal,
            diversifier=transition if transition is not None else served.diversifier,
        )
        gate = compare_on_validation(served, candidate, ds, share=validation_share)
    pins: dict[str, int] = {}
    with Store.open(store, artifact_dir=artifact_dir) as st:
        rec = st.save_artifact(
            PERSONALIZER_ARTIFACT,
            personal.save,
            metrics={**_jsonable(personal.model.metadata_), "gate": gate.to_json()},  # type: ignore[dict-item]
            params=config.neural.model_dump(mode="json"),
            config_hash=config.hash(),
            activate=False,
        )
        pins[PERSONALIZER_ARTIFACT] = rec.version
        click.echo(f"personalizer v{rec.version} stored: {personal.model!r}")
        click.echo(
            f"GNN item embeddings for the gnn_neighbors source: "
            f"{st.artifact_path(rec) / 'item_embeddings.npz'} "
            '(set [sources.gnn_neighbors] embeddings = "<that path>")'
        )
        if transition is not None:
            rec = st.save_artifact(
                TYPE_TRANSITION_ARTIFACT,
                transition.save,
                metrics={"gate": gate.to_json()},
                params=config.type_transition.model_dump(mode="json"),
                config_hash=config.hash(),
                activate=False,
            )
            pins[TYPE_TRANSITION_ARTIFACT] = rec.version
            click.echo(f"type transition v{rec.version} stored")
        what = " and ".join(f"{n} v{v}" for n, v in pins.items())
        _gate_and_release(st, store, artifact_dir, pins, gate, activate_anyway, what)


def _jsonable(value: object) -> object:
    """``value`` with anything JSON cannot hold turned into a string."""
    import json

    return json.loads(json.dumps(value, default=str))


def _titles(store: str, artifact_dir: str | None) -> dict[str, str]:
    """Item id -> title from the store's catalog (empty when it has none)."""
    from recset.storage import Store

    with Store.open(store, artifact_dir=artifact_dir, create=False) as st:
        catalog = st.read_catalog()
    if not len(catalog):
        return {}
    return dict(zip(catalog["item_id"], catalog["title"].fillna(""), strict=True))


@cli.command()
@click.argument("seed")
@click.option("--store", required=True, help="Store written by `recset build`.")
@click.option(
    "--artifact-dir",
    type=str,
    default=None,
    help="Artifact files directory of a database store that keeps them on a filesystem "
    "(not needed when they are in the database or at a URL).",
)
@click.option("--k", type=click.IntRange(1, MAX_K), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def explain(seed: str, store: str, artifact_dir: str | None, k: int, as_json: bool) -> None:
    """Show SEED's recall mix and every candidate with the score and rank from each source."""
    from recset.engine import Engine

    engine = Engine.load(store, artifact_dir=artifact_dir)
    info = engine.explain(seed, k=k)
    titles = _titles(store, artifact_dir)
    info["title"] = titles.get(seed, "")
    for c in info["candidates"]:
        c["title"] = titles.get(c["item_id"], "")
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
    click.echo(f"seed {seed} {info['title']} ({state}); mix: {where}".replace("  ", " "))
    filters = ", ".join(mix["filters"]) or "-"
    click.echo(
        f"  sources: {', '.join(mix['sources'])}; filters: {filters}; fusion: {mix['fusion']}"
    )
    for i, c in enumerate(info["candidates"], 1):
        why = "; ".join(
            f"{r['source']} #{r['rank'] + 1} score {r['score']:.4g}" for r in c["reasons"]
        )
        click.echo(f"  {i:>3}. {c['item_id']:<14} {c['title'][:40]:<40} {c['score']:.4g}  <- {why}")


def _parse_at(value: str | None) -> float | None:
    """``--at``: epoch seconds or an ISO 8601 date (naive means UTC)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    import pandas as pd

    try:
        t = pd.Timestamp(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is neither epoch seconds nor an ISO 8601 date", param_hint="--at"
        ) from exc
    if t.tzinfo is None:
        t = t.tz_localize("UTC")
    return float(t.timestamp())


@cli.command()
@click.argument("seeds", nargs=-1)
@click.option("--store", required=True, help="Store written by `recset build`.")
@click.option(
    "--artifact-dir",
    type=str,
    default=None,
    help="Artifact files directory of a database store that keeps them on a filesystem "
    "(not needed when they are in the database or at a URL).",
)
@click.option("--user", default=None, help="User id, for personalization.")
@click.option("--k", type=click.IntRange(1, MAX_K), default=10, show_default=True)
@click.option(
    "--examples",
    type=click.IntRange(0, MAX_EXAMPLES),
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
@click.option(
    "--at",
    "at",
    default=None,
    help="When the request is asked: epoch seconds or an ISO 8601 date (default: now). Only "
    "the promotion-calendar ranker features read it.",
)
def recommend(
    seeds: tuple[str, ...],
    store: str,
    artifact_dir: str | None,
    user: str | None,
    k: int,
    examples: int,
    as_json: bool,
    mode: str,
    at: str | None,
) -> None:
    """Print recommendations, with their reasons, for SEEDS (item ids)."""
    from recset.engine import Engine
    from recset.storage import Store

    when = _parse_at(at)
    engine = Engine.load(store, artifact_dir=artifact_dir)
    seed_list = list(seeds)
    titles = _titles(store, artifact_dir)
    if examples:
        with Store.open(store, artifact_dir=artifact_dir, create=False) as st:
            catalog = st.read_catalog()
        examples = min(examples, len(catalog))  # no more examples than the catalog holds
        step = max(len(catalog) // (examples + 1), 1)
        seed_list += [str(catalog["item_id"].iloc[i * step]) for i in range(examples)]
    if not seed_list:
        raise click.UsageError("give at least one SEED or --examples N")
    for seed in seed_list:
        recs = engine.recommend(seed, user=user, k=k, mode=mode, at=when)  # type: ignore[arg-type]
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
    "config_specs",
    multiple=True,
    metavar="[NAME=]PATH",
    help="Config TOML (default: built-in defaults). Repeat to compare configs side by side "
    "on the same queries (the first is the reference); named by the file stem or NAME.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    callback=_not_a_file,
    help="Report directory (report.html, report.md, metrics.json, plots).",
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
    "--seeds",
    type=click.Choice(["all", "first", "prefix"]),
    default="all",
    show_default=True,
    help="Seeds of a test basket: every item (the rest are its targets), the first-added "
    "item only, or its first items as a cart (served like recommend_basket; every cart "
    "size 1..n-1), the rest as targets.",
)
@click.option(
    "--first-item-only", is_flag=True, help="Same as --seeds first (kept for old scripts)."
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
    type=click.IntRange(10, MAX_BOOTSTRAP),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for the confidence intervals.",
)
@click.option(
    "--samples",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Sample lists (with titles and reasons) for 2 seeds of this many largest categories.",
)
@click.option(
    "--allow-unknown-categories",
    is_flag=True,
    help="Warn about a [categories] key that matches no category instead of stopping.",
)
@click.option("--store", default=None, help="Also record the run in this store (it must exist).")
@click.option("--create", is_flag=True, help="Create --store if it does not exist.")
@_bad_rows_options
def backtest(
    data: Path,
    config_specs: tuple[str, ...],
    out: Path,
    split_kind: str,
    split_date: str | None,
    test_share: float,
    seeds: str,
    first_item_only: bool,
    max_queries: int | None,
    baselines: str | None,
    no_ablations: bool,
    no_ranker: bool,
    explore_share: float,
    neural: bool,
    bootstrap: int,
    samples: int,
    allow_unknown_categories: bool,
    store: str | None,
    create: bool,
    on_bad_rows: str,
    time_range: tuple[int | None, int | None] | None,
) -> None:
    """Hit@k backtest of the engine, its ablations and the baselines on held-out baskets.

    With several --config, every config is evaluated on the same queries and the report
    compares them in every category a config overrides (paired bootstrap intervals).
    """
    from datetime import UTC, datetime

    import pandas as pd

    from recset.eval.backtest import (
        format_table,
        named_configs,
        run_side_by_side,
        summary_systems,
        write_report,
    )
    from recset.eval.baselines import BASELINES

    configs = named_configs(config_specs)
    if store and not create:
        from recset.errors import StorageError
        from recset.storage import Store

        try:  # before the run, not after it: a typo must not cost a backtest
            with Store.open(store, create=False):
                pass
        except StorageError as exc:
            raise click.BadParameter(
                f"{exc}\n(pass --create to create a new store there)", param_hint="--store"
            ) from None
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
    _progress_lines()
    ds = _load(data, on_bad_rows, out, time_range)
    started = datetime.now(UTC)
    label = "backtest" + (f" of {len(configs)} configs side by side" if len(configs) > 1 else "")
    with _step(label):
        results, comparison = run_side_by_side(
            ds,
            configs,
            split=split_kind,  # type: ignore[arg-type]
            t=t,
            test_share=test_share,
            max_queries=max_queries,
            seeds="first" if first_item_only else seeds,  # type: ignore[arg-type]
            baselines=names,
            ablations=not no_ablations,
            ranker=not no_ranker,
            explore_share=explore_share,
            neural=neural,
            n_boot=bootstrap,
            samples=samples,
            allow_unknown_categories=allow_unknown_categories,
            show_progress=True,
        )
    result = results[0]
    multi = len(configs) > 1
    write_report(
        result,
        out,
        configs=configs,
        comparison=comparison if multi else None,
        others={c.name: r for c, r in zip(configs[1:], results[1:], strict=True)},
    )
    click.echo(f"\nItem-level Hit@k on {result.queries:,} queries ({out}/report.html has more)\n")
    click.echo(format_table(result, "item", summary_systems(result)))
    for name, ci in result.confidence.items():
        click.echo(f"  {name}: hit@10 {ci['hit@10']:.4f} (95% CI {ci['low']:.4f}-{ci['high']:.4f})")
    if multi:
        ref = comparison["reference"]
        for system in comparison["systems"]:
            cells = comparison["all_queries"]["systems"][system]
            for c in configs[1:]:
                d = cells[c.name]
                click.echo(
                    f"  {system}: {c.name} - {ref} = {d['diff']:+.4f} "
                    f"(95% CI {d['low']:+.4f} to {d['high']:+.4f})"
                )
    if store:
        from recset.storage import Store

        with Store.open(store, create=create) as st:
            run_id = st.record_backtest(
                dataset=result.dataset,
                config=configs[0].config.to_dict(),
                metrics=result.to_json(),
                started_at=started,
                finished_at=datetime.now(UTC),
                report_path=str(out / "report.md"),
            )
        click.echo(f"recorded as backtest run {run_id} in {store}")


_SERVED_ARTIFACTS = ("engine", "ranker", "personalizer", "type_transition")


def _store_options(*, required: bool = True):  # noqa: ANN202
    """--store and --artifact-dir of the commands that read a built store."""

    def apply(f):  # noqa: ANN001, ANN202
        f = click.option(
            "--artifact-dir",
            type=str,
            default=None,
            help="Artifact files directory of a database store that keeps them on a "
            "filesystem (not needed when they are in the database or at a URL).",
        )(f)
        help_ = "Store written by `recset build`" + ("." if required else " (required).")
        return click.option("--store", required=required, help=help_)(f)

    return apply


@cli.command("update-calendar")
@click.option(
    "--calendar",
    "calendar_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="The new promotion calendar: a promotions.parquet / .csv file, or a dataset "
    "directory holding one (docs/data-format.md).",
)
@_store_options()
@_on_bad_rows_option("calendar rows (an item the engine does not know, an end not after its start)")
@_store_locked("recset update-calendar")
def update_calendar_cmd(
    calendar_path: Path, store: str, artifact_dir: str | None, on_bad_rows: str
) -> None:
    """Serve a new promotion calendar with the active ranker, without retraining it.

    The ranker's calendar features (cand_promo, ...) read the calendar at the request's
    time; this stores a new version of the active ranker whose features read CALENDAR
    instead of the one it was trained with (the models and everything learned stay), and
    activates a release with it. The calendar replaces the old one: keep past periods in
    it when requests replay past times.
    """
    from recset.data import read_promotions
    from recset.engine import Engine
    from recset.ranking import RANKER_ARTIFACT
    from recset.storage import Store

    engine = Engine.load(store, artifact_dir=artifact_dir, neural=False)
    if engine.ranker is None:
        raise click.UsageError(
            f"the active release in {store} serves no ranker; train one first "
            "(`recset train-ranker`)"
        )
    quarantine = _quarantine_dir(store, calendar_path.parent)
    promotions = read_promotions(
        calendar_path, engine.items, quarantine_dir=quarantine, on_bad_rows=on_bad_rows
    )
    if promotions is None:
        raise click.UsageError(
            f"{calendar_path} holds no promotions.parquet or promotions.csv "
            "(give the calendar file, or the directory holding it)"
        )
    ranker = engine.ranker.with_calendar(promotions)
    cal = ranker.metrics["calendar"]
    with Store.open(store, artifact_dir=artifact_dir) as st:
        current = st.active_artifact(RANKER_ARTIFACT)
        record = st.save_artifact(
            RANKER_ARTIFACT,
            ranker.save,
            metrics=ranker.metrics,
            params=current.params if current else None,
            config_hash=current.config_hash if current else None,
            activate=False,
        )
        click.echo(
            f"ranker v{record.version} stored: calendar of {cal['periods']:,} periods over "
            f"{cal['items']:,} items, channels {cal['channels']}, read by {cal['features']}"
        )
        pins = {**st.active_release_record().pins, "ranker": record.version}
        release = _activate_checked(
            st, store, artifact_dir, pins, f"recset update-calendar ({calendar_path.name})"
        )
        click.echo(f"{release.describe()} is active in {store}")


@cli.command()
@_store_options()
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of text.")
@click.option(
    "--artifacts",
    "per_artifact",
    is_flag=True,
    help="List every artifact version (engine, ranker, neural stages) instead of releases.",
)
def versions(store: str, artifact_dir: str | None, as_json: bool, per_artifact: bool) -> None:
    """List the releases (what a service loads): id, created, config hash, the engine,
    ranker and neural stage versions each pins, and which one is active (*)."""
    from recset.storage import Store

    with Store.open(store, artifact_dir=artifact_dir, create=False) as st:
        records = [r for r in st.list_artifacts() if r.name in _SERVED_ARTIFACTS]
        releases = st.list_releases()
    if not records:
        raise click.ClickException(f"{store} holds no engine version; run `recset build`")
    if per_artifact:
        for r in records:
            row = {
                "artifact": r.name,
                "version": r.version,
                "created_at": r.created_at.isoformat(),
                "status": r.status,
                "config_hash": r.config_hash,
            }
            mark = "*" if r.status == "active" else " "
            click.echo(
                json.dumps(row)
                if as_json
                else f"{mark} {r.name:<16} v{r.version:<4} {r.created_at:%Y-%m-%d %H:%M:%S} "
                f"UTC  {r.status:<8} config {(r.config_hash or '-')[:12]}"
            )
        return
    for rel in releases:
        neural = [
            f"{n} v{rel.pins[n]}" for n in ("personalizer", "type_transition") if n in rel.pins
        ]
        if as_json:
            row = {
                "release": rel.id,
                "created_at": rel.created_at.isoformat(),
                "status": rel.status,
                "active": rel.status == "active",
                "config_hash": rel.config_hash,
                **{n: rel.pins.get(n) for n in _SERVED_ARTIFACTS},
                "note": rel.note,
            }
            click.echo(json.dumps(row))
            continue
        mark = "*" if rel.status == "active" else " "
        ranker = f"v{rel.pins['ranker']}" if "ranker" in rel.pins else "-"
        click.echo(
            f"{mark} release {rel.id:<4} {rel.created_at:%Y-%m-%d %H:%M:%S} UTC  {rel.status:<8} "
            f"config {(rel.config_hash or '-')[:12]:<12}  engine v{rel.engine:<4} "
            f"ranker {ranker:<5} neural {', '.join(neural) or '-'}"
        )


@cli.command()
@click.argument("version", type=click.IntRange(min=1))
@_store_options()
@click.option(
    "--artifact",
    type=click.Choice(_SERVED_ARTIFACTS),
    default=None,
    help="Activate version VERSION of this artifact with the other versions of the active "
    "release (a new release), instead of release VERSION.",
)
def activate(version: int, store: str, artifact_dir: str | None, artifact: str | None) -> None:
    """Make release VERSION the active one (e.g. to roll back); running services follow it.

    The release is loaded first as a service would load it; one that cannot load is refused
    (exit status 3) and the active release stays.
    """
    from recset.storage import Store

    with Store.open(store, artifact_dir=artifact_dir, create=False) as st:
        if artifact is None:
            release = st.release(version)
            if release.status != "active":
                problem = _load_problem(store, artifact_dir, release.id)
                if problem is not None:
                    raise NotActivated(
                        f"{release.describe()} cannot load ({problem}); "
                        f"{_describe_active(st)} stays active"
                    )
                release = st.activate_release(release.id)
        else:
            st.artifact(artifact, version)  # an unknown version names the known ones
            current = st.active_release_record()
            pins = {**(current.pins if current else {}), artifact: version}
            if "engine" not in pins:
                raise click.ClickException(f"{store} has no active engine to serve with")
            release = _activate_checked(
                st, store, artifact_dir, pins, f"recset activate --artifact {artifact}"
            )
    click.echo(f"{release.describe()} is active in {store}")


@cli.command()
@_store_options()
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    required=True,
    help="How many of the newest releases to keep (the active one is always kept).",
)
def prune(store: str, artifact_dir: str | None, keep: int) -> None:
    """Remove old releases and the versions no kept release pins (their files, saved
    catalogs and recall lists). Never the active release; a version staged after the newest
    kept release is kept too."""
    from recset.storage import Store

    with Store.open(store, artifact_dir=artifact_dir, create=False) as st:
        with st.build_lock("recset prune"):
            result = st.prune(keep)
    versions_ = ", ".join(f"{n} v{v}" for n, v in result.artifacts) or "none"
    click.echo(
        f"pruned {len(result.releases)} releases {result.releases} and {len(result.artifacts)} "
        f"artifact versions ({versions_}) from {store}"
    )


@cli.command()
@_store_options(required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (they share the memory-mapped candidate lists).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Seconds between checks for a newly activated version (0: only POST /admin/reload).",
)
@click.option(
    "--neural/--no-neural",
    default=True,
    show_default=True,
    help="Attach the store's active neural stages.",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option(
    "--top-cache-mb",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Per worker: recent seeds' mixed and filled candidates kept for the next request "
    "(MiB; 0: off).",
)
@click.option(
    "--openapi", "print_openapi", is_flag=True, help="Print the OpenAPI document and exit."
)
def serve(
    store: str | None,
    artifact_dir: str | None,
    host: str,
    port: int,
    workers: int,
    poll_interval: float,
    neural: bool,
    access_log: bool,
    top_cache_mb: int,
    print_openapi: bool,
) -> None:
    """Serve the store's active engine over HTTP (JSON; docs/serving.md); reload on activation.

    POST /admin/reload is enabled by setting RECSET_ADMIN_TOKEN.
    """
    try:
        from recset.serve import ServeSettings, openapi_document, run
    except ImportError as e:
        raise click.ClickException(
            f"`recset serve` needs the serve extra: pip install 'recset[serve]' ({e})"
        ) from e
    if print_openapi:
        click.echo(json.dumps(openapi_document(), indent=2))
        return
    if store is None:
        raise click.UsageError("Missing option '--store'.")
    settings = ServeSettings(
        store=store,
        artifact_dir=None if artifact_dir is None else str(artifact_dir),
        host=host,
        port=port,
        workers=workers,
        poll_interval=poll_interval,
        neural=neural,
        access_log=access_log,
        top_cache_mb=top_cache_mb,
    )
    run(settings)


@cli.command()
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset directory.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Base config TOML (default: built-in defaults); copied into --out.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="The tuned config TOML to write: the base config plus commented overrides.",
)
@click.option(
    "--split",
    "split_kind",
    type=click.Choice(["time", "leave_last"]),
    default="time",
    show_default=True,
    help="How the backtest cuts its test window (cut off here first and never read).",
)
@click.option("--test-share", type=click.FloatRange(0.01, 0.99), default=0.2, show_default=True)
@click.option(
    "--valid-share",
    type=click.FloatRange(0.01, 0.99),
    default=0.2,
    show_default=True,
    help="Share of the training baskets that are the validation window (time split).",
)
@click.option(
    "--depth",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Category-path depth of the groups tuned (1: top level).",
)
@click.option(
    "--min-queries",
    type=click.IntRange(min=20),
    default=150,
    show_default=True,
    help="Validation queries a group needs to be tuned.",
)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@_bad_rows_options
def tune(
    data: Path,
    config_path: Path | None,
    out: Path,
    split_kind: str,
    test_share: float,
    valid_share: float,
    depth: int,
    min_queries: int,
    force: bool,
    on_bad_rows: str,
    time_range: tuple[int | None, int | None] | None,
) -> None:
    """Tune the recall mix per category on a validation window cut from the training data.

    Writes --out: the base config followed by a [categories."..."] override for every group
    whose tuned mix gained on validation (each with that gain in a comment). Compare it with
    the base on the test window: recset backtest --config BASE --config OUT.
    """
    from recset.config import load_config
    from recset.eval.tune import tune_mixes, tune_report_rows, tuned_toml
    from recset.storage import atomic_write_text

    if out.exists() and not force:
        raise click.UsageError(f"{out} exists; pass --force to replace it")
    config = load_config(config_path)
    ds = _load(data, on_bad_rows, out.parent, time_range)
    with _step("tune the mixes per category"):
        result = tune_mixes(
            ds,
            config,
            split=split_kind,  # type: ignore[arg-type]
            test_share=test_share,
            valid_share=valid_share,
            depth=depth,
            min_queries=min_queries,
            show_progress=True,
        )
    if config_path is not None:
        result.base_text = config_path.read_text(encoding="utf-8")
    click.echo(f"\n{'group':<40} {'queries':>6} validation item Hit@10")
    for line in tune_report_rows(result):
        click.echo(line)
    atomic_write_text(
        out,
        tuned_toml(result, config.mix, base_path=str(config_path) if config_path else None),
    )
    load_config(out)  # what was written reads back as a valid config
    click.echo(f"\nwrote {out}: {len(result.accepted)} overrides of {len(result.groups)} groups")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``recset`` command."""
    if not sys.stderr.isatty():
        # progress bars redrawn in a log file are unreadable: a few updates per bar at most
        os.environ.setdefault("TQDM_MININTERVAL", "30")
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
