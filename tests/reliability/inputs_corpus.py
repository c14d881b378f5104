"""The malformed-input corpus: rows, files, configs, API calls and CLI arguments.

Each :class:`Case` feeds recset one bad (or odd) input and says what must happen: a clear
refusal (a ``RecsetError`` or a click usage error, exit 2, whose message holds every
``expect`` fragment: the file, row or key at fault) or, for the inputs accepted on purpose,
success. Cases that aim a build at the shared store must leave it unchanged: its files
byte-identical and its answers the same.

``tests/reliability/test_inputs.py`` runs every case as a test; ``bench/reliability_inputs.py``
runs them all and prints the figures recorded in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import shutil
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recset.cli import main
from recset.config import config_from_dict
from recset.data import Dataset, load_dataset, read_validated, write_dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.engine import Engine
from recset.errors import RecsetError

PG_URL = "postgresql+psycopg2://nobody@127.0.0.1:1/absent"
"""A PostgreSQL store URL nothing answers at: NUL checks must fire before any connection."""


class Refused(Exception):
    """The command refused the input (non-zero exit); ``message`` is what the user saw."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Case:
    """One input and what must happen to it."""

    id: str
    group: str  # rows | files | config | api | cli | accepted
    act: Callable[[Context], object]
    expect: tuple[str, ...] = ()
    accept: bool = False  # documented acceptance: the input must go through
    note: str = ""  # for acceptances: what is accepted and why
    touches_store: bool = False


@dataclass
class Outcome:
    kind: str  # clear | unclear | traceback | silent | accepted | rejected
    message: str
    store_changed: bool = False


@dataclass
class Context:
    """What the cases share: a good dataset, a built store and its snapshot."""

    root: Path
    data: Path
    catalog: pd.DataFrame
    events: pd.DataFrame
    store: Path
    seed: str
    files: dict[str, str] = field(default_factory=dict)
    answers: list[Any] = field(default_factory=list)
    _n: itertools.count[int] = field(default_factory=itertools.count)

    def fresh(self, name: str) -> Path:
        path = self.root / "cases" / f"{next(self._n):03d}-{name}"
        path.mkdir(parents=True)
        return path

    def write(
        self,
        name: str,
        catalog: pd.DataFrame | None = None,
        events: pd.DataFrame | None = None,
        fmt: str = "parquet",
    ) -> Path:
        """A dataset directory holding ``catalog`` and ``events`` as given (no normalising)."""
        d = self.fresh(name)
        for stem, frame in (("catalog", catalog), ("events", events)):
            frame = (self.catalog if stem == "catalog" else self.events) if frame is None else frame
            if fmt == "csv":
                frame.to_csv(d / f"{stem}.csv", index=False)
            else:
                frame.to_parquet(d / f"{stem}.parquet", index=False)
        return d

    def build(self, data: Path, *extra: str, store: str | None = None) -> str:
        return cli("build", "--data", str(data), "--store", store or str(self.store), *extra)

    def engine(self) -> Engine:
        return Engine.load(self.store)

    def store_files(self) -> dict[str, str]:
        return {
            str(p.relative_to(self.store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.store.rglob("*"))
            if p.is_file()
        }

    def store_answers(self) -> list[Any]:
        engine = self.engine()
        seeds = [*self.catalog["item_id"].iloc[::7].tolist(), "never-seen-item"]
        return [[(r.item_id, round(r.score, 6)) for r in engine.recommend(s, k=10)] for s in seeds]

    def store_unchanged(self, *, answers: bool = True) -> bool:
        if self.store_files() != self.files:
            return False
        return not answers or self.store_answers() == self.answers


def cli(*argv: str) -> str:
    """Run ``recset ARGV`` in process; its output, or :class:`Refused` on a non-zero exit."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    text = out.getvalue() + err.getvalue()
    if code != 0:
        raise Refused(text)
    return text


def make_context(root: Path) -> Context:
    """A small synthetic dataset and a store built from it, with its snapshot."""
    syn = generate(SyntheticConfig(n_items=120, n_users=50, n_events=2500, seed=5))
    data = root / "good"
    write_dataset(syn.catalog, syn.events, data)
    catalog = pd.read_parquet(data / "catalog.parquet")
    events = pd.read_parquet(data / "events.parquet")
    # the cases edit events as the format's frames hold them: whole epoch seconds (the file
    # stores microsecond timestamps)
    events["timestamp"] = (events["timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta("1s")
    store = root / "store"
    ctx = Context(root, data, catalog, events, store, seed=str(catalog["item_id"].iloc[0]))
    ctx.build(data)
    ctx.files = ctx.store_files()
    ctx.answers = ctx.store_answers()
    return ctx


def run_case(case: Case, ctx: Context) -> Outcome:
    """Run one case and classify what happened (see :class:`Outcome`)."""
    try:
        case.act(ctx)
    except Refused as exc:
        message, refused = exc.message, True
    except RecsetError as exc:  # ParameterTypeError is a TypeError too
        message, refused = f"{type(exc).__name__}: {exc}", True
    except Exception:  # anything else reaches the user as a traceback
        return Outcome("traceback", traceback.format_exc())
    else:
        message, refused = "", False
    if case.accept:
        kind = "rejected" if refused else "accepted"
    elif not refused:
        kind = "silent"
    else:
        text = message.casefold()
        clear = "traceback" not in text and all(f.casefold() in text for f in case.expect)
        kind = "clear" if clear else "unclear"
    changed = case.touches_store and not ctx.store_unchanged()
    return Outcome(kind, message, changed)


def tally(outcomes: dict[str, tuple[Case, Outcome]]) -> dict[str, Counter[str]]:
    """Counts of outcome kinds per group (and ``"all"``)."""
    out: dict[str, Counter[str]] = {}
    for case, outcome in outcomes.values():
        for group in (case.group, "all"):
            c = out.setdefault(group, Counter())
            c["tried"] += 1
            c[outcome.kind] += 1
            c["store changed"] += outcome.store_changed
    return out


# --- the cases --------------------------------------------------------------------------------

CASES: list[Case] = []


def case(
    cid: str,
    group: str,
    *expect: str,
    accept: bool = False,
    note: str = "",
    store: bool = False,
) -> Callable[[Callable[[Context], object]], Callable[[Context], object]]:
    def register(act: Callable[[Context], object]) -> Callable[[Context], object]:
        CASES.append(Case(cid, group, act, tuple(expect), accept, note, store))
        return act

    return register


def _set(frame: pd.DataFrame, row: int, **values: object) -> pd.DataFrame:
    out = frame.copy()
    for col, v in values.items():
        if col in out.columns and not isinstance(v, type(out[col].iloc[0])):
            out[col] = out[col].astype(object)
        out.loc[row, col] = v
    return out


def bad_events(
    cid: str, change: Callable[[pd.DataFrame], pd.DataFrame], *expect: str, fmt: str = "parquet"
) -> None:
    def act(ctx: Context) -> object:
        return ctx.build(ctx.write(cid, events=change(ctx.events.copy()), fmt=fmt))

    CASES.append(Case(cid, "rows", act, (f"events.{fmt}", *expect), touches_store=True))


def bad_catalog(
    cid: str, change: Callable[[pd.DataFrame], pd.DataFrame], *expect: str, fmt: str = "parquet"
) -> None:
    def act(ctx: Context) -> object:
        return ctx.build(ctx.write(cid, catalog=change(ctx.catalog.copy()), fmt=fmt))

    CASES.append(Case(cid, "rows", act, (f"catalog.{fmt}", *expect), touches_store=True))


YEAR_3000 = int(pd.Timestamp("3000-01-01", tz="UTC").timestamp())


def _scaled(scale: int, n: int = 10) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(ev: pd.DataFrame) -> pd.DataFrame:
        ev["timestamp"] = ev["timestamp"].astype(object)
        ev.loc[: n - 1, "timestamp"] = ev["timestamp"].iloc[:n].astype(object) * scale
        return ev

    return change


# events: timestamps
bad_events("ts-year-3000", lambda e: _set(e, 5, timestamp=YEAR_3000), "row 6", "plausible range")
bad_events("ts-milliseconds", _scaled(1000), "row 1", "row 10", "milliseconds")
bad_events("ts-microseconds", _scaled(10**6), "row 1", "microseconds")
bad_events("ts-nanoseconds", _scaled(10**9, 3), "row 3", "nanoseconds")
bad_events("ts-1e30-text", lambda e: _set(e, 3, timestamp="1e30"), "row 4", "'1e30'", fmt="csv")
bad_events(
    "ts-float-1e19",
    lambda e: e.assign(timestamp=e["timestamp"].astype(float)).pipe(_set, 3, timestamp=1e19),
    "row 4",
    "plausible range",
)
bad_events("ts-negative", lambda e: _set(e, 0, timestamp=-5), "row 1", "plausible range")
bad_events(
    "ts-word", lambda e: _set(e, 2, timestamp="yesterday"), "row 3", "unparseable", fmt="csv"
)
bad_events(
    "ts-fraction",
    lambda e: e.assign(timestamp=e["timestamp"].astype(float)).pipe(_set, 7, timestamp=1.7e9 + 0.5),
    "row 8",
    "unparseable",
)
bad_events(
    "ts-inf",
    lambda e: e.assign(timestamp=e["timestamp"].astype(float)).pipe(_set, 1, timestamp=np.inf),
    "row 2",
    "plausible range",
)
bad_events(
    "ts-null",
    lambda e: e.assign(timestamp=e["timestamp"].astype(float)).pipe(_set, 1, timestamp=np.nan),
    "row 2",
    "unparseable",
)
bad_events("ts-blank", lambda e: _set(e, 4, timestamp=""), "row 5", "unparseable", fmt="csv")
bad_events(
    "ts-iso-3000", lambda e: _set(e, 4, timestamp="3000-01-01"), "row 5", "plausible", fmt="csv"
)
bad_events(
    "ts-iso-garbage",
    lambda e: _set(e, 4, timestamp="2024-13-45"),
    "row 5",
    "unparseable",
    fmt="csv",
)
bad_events(
    "ts-datetime-2200",
    lambda e: e.assign(
        timestamp=pd.to_datetime(e["timestamp"], unit="s").astype("datetime64[us]")
    ).pipe(_set, 2, timestamp=pd.Timestamp("2200-01-01")),
    "row 3",
    "plausible range",
)
bad_events("ts-ms-text", lambda e: _set(e, 0, timestamp="1704085359000"), "milliseconds", fmt="csv")
bad_events("ts-hex", lambda e: _set(e, 0, timestamp="0x10"), "row 1", "unparseable", fmt="csv")

# events: other columns
bad_events("event-unknown", lambda e: _set(e, 3, event="click"), "row 4", "unknown event")
bad_events("event-case", lambda e: _set(e, 3, event="PURCHASE"), "row 4", "unknown event")
bad_events("event-null", lambda e: _set(e, 3, event=None), "row 4", "unknown event")
bad_events("user-null", lambda e: _set(e, 2, user_id=None), "row 3", "missing user_id")
bad_events("user-blank", lambda e: _set(e, 2, user_id="   "), "row 3", "missing user_id", fmt="csv")
bad_events("item-null", lambda e: _set(e, 2, item_id=None), "row 3", "missing item_id")
bad_events("item-unknown", lambda e: _set(e, 2, item_id="nope"), "row 3", "not in the catalog")
bad_events(
    "item-int-vs-text",
    lambda e: _set(e, 2, item_id=99999),
    "row 3",
    "'99999' is not in the catalog",
    fmt="csv",
)
bad_events("no-event-column", lambda e: e.drop(columns=["event"]), "missing required columns")
bad_events("no-timestamp-column", lambda e: e.drop(columns=["timestamp"]), "['timestamp']")
bad_events("no-user-column", lambda e: e.drop(columns=["user_id"]), "['user_id']")
bad_events("events-no-rows", lambda e: e.iloc[:0], "holds no rows")
bad_events("events-no-rows-csv", lambda e: e.iloc[:0], "holds no rows", fmt="csv")
bad_events("all-events-bad", lambda e: e.assign(event="click"), "bad rows", "unknown event")
bad_events(
    "many-bad-rows-summarised", lambda e: e.assign(user_id=None), "first ones", "--on-bad-rows skip"
)

# catalog
bad_catalog("no-item-id-column", lambda c: c.drop(columns=["item_id"]), "'item_id'")
bad_catalog("item-id-null", lambda c: _set(c, 4, item_id=None), "row 5", "missing item_id")
bad_catalog(
    "item-id-duplicate",
    lambda c: _set(c, 4, item_id=c["item_id"].iloc[0]),
    "row 5",
    "duplicate item_id",
)
bad_catalog("price-word", lambda c: _set(c, 1, price="cheap"), "row 2", "not a number", fmt="csv")
bad_catalog("price-inf", lambda c: _set(c, 1, price=np.inf), "row 2", "not finite")
bad_catalog("price-minus-inf", lambda c: _set(c, 1, price=-np.inf), "row 2", "not finite")
bad_catalog("price-negative", lambda c: _set(c, 1, price=-3.0), "row 2", "negative")
bad_catalog("price-nan-text", lambda c: _set(c, 1, price="nan"), "row 2", "not a number", fmt="csv")
bad_catalog("price-inf-text", lambda c: _set(c, 1, price="inf"), "row 2", "not finite", fmt="csv")
bad_catalog(
    "available-maybe", lambda c: _set(c, 3, available="maybe"), "row 4", "boolean", fmt="csv"
)
bad_catalog("aspects-not-json", lambda c: _set(c, 3, aspects="{oops"), "row 4", "JSON object")
bad_catalog("aspects-array", lambda c: _set(c, 3, aspects="[1, 2]"), "row 4", "JSON object")
bad_catalog("aspects-number", lambda c: _set(c, 3, aspects="7"), "row 4", "JSON object")
bad_catalog("catalog-no-rows", lambda c: c.iloc[:0], "holds no rows")


@case("nul-in-item-id-postgres", "rows", "catalog.parquet", "row 2", "U+0000", "PostgreSQL")
def _nul_pg(ctx: Context) -> object:
    return ctx.build(
        ctx.write("nul-pg", catalog=_set(ctx.catalog, 1, item_id="a\x00b")), store=PG_URL
    )


@case("nul-in-title-postgres", "rows", "row 3", "title", "U+0000")
def _nul_title_pg(ctx: Context) -> object:
    return ctx.build(ctx.write("nul-t", catalog=_set(ctx.catalog, 2, title="x\x00")), store=PG_URL)


@case(
    "time-range-option",
    "rows",
    "events.parquet",
    "plausible range 1970-01-01 .. 2020-01-01",
    store=True,
)
def _time_range(ctx: Context) -> object:
    return ctx.build(ctx.data, "--time-range", "..2020-01-01")


# --- files ------------------------------------------------------------------------------------


def _file_case(cid: str, *expect: str) -> Callable[[Callable[[Path], None]], None]:
    """A case whose dataset directory ``spoil(d)`` damages after a good copy is written."""

    def register(spoil: Callable[[Path], None]) -> None:
        def act(ctx: Context) -> object:
            d = ctx.fresh(cid)
            shutil.copytree(ctx.data, d, dirs_exist_ok=True)
            spoil(d)
            return ctx.build(d)

        CASES.append(Case(cid, "files", act, expect, touches_store=True))

    return register


@_file_case("catalog-garbage-bytes", "catalog.parquet", "cannot be read")
def _(d: Path) -> None:
    (d / "catalog.parquet").write_bytes(b"not parquet at all")


@_file_case("events-zero-bytes", "events.parquet", "cannot be read")
def _(d: Path) -> None:
    (d / "events.parquet").write_bytes(b"")


@_file_case("events-truncated", "events.parquet", "cannot be read")
def _(d: Path) -> None:
    p = d / "events.parquet"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@_file_case("events-corrupt-page", "events.parquet", "cannot be read")
def _(d: Path) -> None:
    p = d / "events.parquet"
    raw = bytearray(p.read_bytes())
    raw[8:400] = b"\xff" * 392  # the first data pages, footer intact
    p.write_bytes(bytes(raw))


@_file_case("catalog-is-an-empty-directory", "catalog.parquet", "holds no rows")
def _(d: Path) -> None:
    (d / "catalog.parquet").unlink()
    (d / "catalog.parquet").mkdir()


@_file_case("no-catalog-file", "no catalog.parquet or catalog.csv")
def _(d: Path) -> None:
    (d / "catalog.parquet").unlink()


@_file_case("no-events-file", "no events.parquet or events.csv")
def _(d: Path) -> None:
    (d / "events.parquet").unlink()


@_file_case("events-csv-latin1", "events.csv", "cannot be read")
def _(d: Path) -> None:
    (d / "events.parquet").unlink()
    (d / "events.csv").write_bytes(b"user_id,item_id,event,timestamp\nu\xe9,i000,view,1704085359\n")


@_file_case("catalog-csv-unclosed-quote", "catalog.csv", "cannot be read")
def _(d: Path) -> None:
    (d / "catalog.parquet").unlink()
    (d / "catalog.csv").write_text('item_id,title\ni000,"never closed\n', encoding="utf-8")


@_file_case("catalog-csv-header-only", "catalog.csv", "holds no rows")
def _(d: Path) -> None:
    (d / "catalog.parquet").unlink()
    (d / "catalog.csv").write_text("item_id,title\n", encoding="utf-8")


@_file_case("events-csv-ragged-row", "events.csv", "cannot be read")
def _(d: Path) -> None:
    (d / "events.parquet").unlink()
    (d / "events.csv").write_text(
        "user_id,item_id,event,timestamp\nu1,i000,view,1704085359,extra,more\n", encoding="utf-8"
    )


@case("data-dir-missing", "files", "not a dataset directory", store=True)
def _(ctx: Context) -> object:
    return ctx.build(ctx.root / "no-such-dir")


@case("data-dir-is-a-file", "files", "not a dataset directory", store=True)
def _(ctx: Context) -> object:
    return ctx.build(ctx.data / "catalog.parquet")


# --- configs ----------------------------------------------------------------------------------


def bad_config(cid: str, text: str | bytes, *expect: str) -> None:
    def act(ctx: Context) -> object:
        p = ctx.fresh(cid) / "config.toml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ctx.build(ctx.data, "--config", str(p))

    CASES.append(Case(cid, "config", act, ("config.toml", *expect), touches_store=True))


bad_config("config-latin1", b"[mix]\nrrf_k = 5 # caf\xe9\n", "not UTF-8")
bad_config("config-bad-toml", "[mix\nrrf_k = 5\n", "not valid TOML")
bad_config("config-sources-popular-int", "[sources]\npopular = 5\n", "'sources.popular'", "table")
bad_config("config-sources-int", "sources = 5\n", "'sources' must be a table")
bad_config("config-rrf-k-inf", "[mix]\nrrf_k = inf\n", "'mix.rrf_k'", "finite")
bad_config("config-rrf-k-nan", "[mix]\nrrf_k = nan\n", "'mix.rrf_k'", "finite")
bad_config("config-rrf-k-negative", "[mix]\nrrf_k = -1.0\n", "'mix.rrf_k'")
bad_config("config-half-life-inf", "[build]\nhalf_life_days = inf\n", "'build.half_life_days'")
bad_config("config-weight-inf", "[mix.weights]\npopular = -inf\n", "'mix.weights.popular'")
bad_config("config-ranker-nan", "[ranker]\nlearning_rate = nan\n", "'ranker.learning_rate'")
bad_config(
    "config-nested-inf",
    '[sources.pop2]\ntype = "popular"\nhalf_life_days = inf\n',
    "'sources.pop2.half_life_days'",
)
bad_config(
    "config-source-path",
    '[sources."../../x"]\ntype = "popular"\n',
    "'sources.../../x'",
    "source name",
)
bad_config("config-source-slash", '[sources."a/b"]\ntype = "popular"\n', "'sources.a/b'")
bad_config("config-source-empty", '[sources.""]\ntype = "popular"\n', "source name")
bad_config("config-source-space", '[sources."my source"]\ntype = "popular"\n', "'my source'")
bad_config("config-source-dot", '[sources.".hidden"]\ntype = "popular"\n', "'.hidden'")
bad_config("config-unknown-section", "[mixx]\n", "unknown section 'mixx'", "allowed sections")
bad_config("config-unknown-key", "[mix]\nfoo = 1\n", "unknown key 'mix.foo'", "allowed keys")
bad_config("config-unknown-source", '[mix]\nsources = ["nope"]\n', "'mix.sources'", "'nope'")
bad_config("config-unknown-filter", '[mix]\nfilters = ["nope"]\n', "'mix.filters'", "'nope'")
bad_config("config-unknown-type", '[sources.x]\ntype = "nope"\n', "'sources.x.type'", "'nope'")
bad_config(
    "config-candidates-zero", "[build]\ncandidates_per_seed = 0\n", "'build.candidates_per_seed'"
)
bad_config(
    "config-candidates-huge",
    "[build]\ncandidates_per_seed = 1000000000\n",
    "'build.candidates_per_seed'",
)
bad_config("config-fallback-unknown", '[build]\nfallback = "nope"\n', "'build.fallback'")
bad_config("config-stage-unknown", '[pipeline]\nstages = ["recall", "nope"]\n', "'nope'")
bad_config("config-stage-order", '[pipeline]\nstages = ["ranker", "recall"]\n', "first stage")
bad_config("config-sources-string", '[mix]\nsources = "popular"\n', "'mix.sources'")
bad_config("config-group-size-text", '[build]\nmax_group_size = "big"\n', "'build.max_group_size'")
bad_config("config-limit-negative", "[mix.limits]\npopular = -1\n", "'mix.limits.popular'")
bad_config("config-category-int", "[categories]\nc001 = 5\n", 'categories."c001"')
bad_config("config-neural-batch-zero", "[neural]\ngnn_batch_size = 0\n", "'neural.gnn_batch_size'")
bad_config("config-ranker-unknown-key", "[ranker]\nfoo = 1\n", "'ranker.foo'")


@case("config-missing-file", "config", "no-such.toml", "cannot read", store=True)
def _(ctx: Context) -> object:
    return ctx.build(ctx.data, "--config", str(ctx.root / "no-such.toml"))


@case("config-is-a-directory", "config", "cannot read", store=True)
def _(ctx: Context) -> object:
    return ctx.build(ctx.data, "--config", str(ctx.root))


# --- the Python API ---------------------------------------------------------------------------

_ENGINE: dict[Path, Engine] = {}


def _engine(ctx: Context) -> Engine:
    if ctx.store not in _ENGINE:
        _ENGINE[ctx.store] = ctx.engine()
    return _ENGINE[ctx.store]


def api(cid: str, call: Callable[[Engine, str], object], *expect: str) -> None:
    CASES.append(Case(cid, "api", lambda ctx: call(_engine(ctx), ctx.seed), expect))


api("recommend-none", lambda e, s: e.recommend(None), "seed_item", "NoneType")  # type: ignore[arg-type]
api("recommend-list-seed", lambda e, s: e.recommend([s, s]), "seed_item", "list")  # type: ignore[arg-type]
api("recommend-int-seed", lambda e, s: e.recommend(12), "seed_item", "str(x)")  # type: ignore[arg-type]
api("recommend-bytes-seed", lambda e, s: e.recommend(s.encode()), "seed_item", "bytes")  # type: ignore[arg-type]
api("recommend-exclude-str", lambda e, s: e.recommend(s, exclude="i001"), "'exclude'", "str")
api("recommend-exclude-int", lambda e, s: e.recommend(s, exclude=5), "'exclude'")  # type: ignore[arg-type]
api("recommend-exclude-ints", lambda e, s: e.recommend(s, exclude=[1, 2]), "exclude[...]")  # type: ignore[list-item]
api("recommend-k-zero", lambda e, s: e.recommend(s, k=0), "'k'", "[1, 10000]")
api("recommend-k-huge", lambda e, s: e.recommend(s, k=1_000_000_000), "'k'", "1000000000")
api("recommend-k-float", lambda e, s: e.recommend(s, k=2.5), "'k'", "float")  # type: ignore[arg-type]
api("recommend-k-bool", lambda e, s: e.recommend(s, k=True), "'k'", "bool")
api("recommend-k-str", lambda e, s: e.recommend(s, k="10"), "'k'", "str")  # type: ignore[arg-type]
api("recommend-user-int", lambda e, s: e.recommend(s, user=5), "'user'", "int")  # type: ignore[arg-type]
api("batch-string", lambda e, s: e.recommend_batch("abc"), "'seed_ids'", "str")
api("batch-none-seed", lambda e, s: e.recommend_batch([s, None]), "seed_ids[...]")  # type: ignore[list-item]
api("batch-users-string", lambda e, s: e.recommend_batch([s], users="u1"), "'users'")
api("batch-exclude-string", lambda e, s: e.recommend_batch([s], exclude="x"), "'exclude'")
api(
    "batch-exclude-length",
    lambda e, s: e.recommend_batch([s], exclude=[["a"], ["b"]]),
    "one collection per seed",
)
api(
    "batch-users-length",
    lambda e, s: e.recommend_batch([s], users=["a", "b"]),
    "one entry per seed",
)
api("batch-k-huge", lambda e, s: e.recommend_batch([s], k=10**9), "'k'")
api("batch-not-iterable", lambda e, s: e.recommend_batch(5), "'seed_ids'")  # type: ignore[arg-type]
api("basket-string", lambda e, s: e.recommend_basket("abc"), "'item_ids'")
api("basket-empty", lambda e, s: e.recommend_basket([]), "'item_ids'", "at least one")
api("basket-k-negative", lambda e, s: e.recommend_basket([s], k=-1), "'k'")
api("basket-user-list", lambda e, s: e.recommend_basket([s], user=["u"]), "'user'")  # type: ignore[arg-type]
api("explain-none", lambda e, s: e.explain(None), "seed_item")  # type: ignore[arg-type]
api("explain-k-zero", lambda e, s: e.explain(s, k=0), "'k'")
api("with-stage-not-a-stage", lambda e, s: e.with_stage("ranker"), "'stage'")  # type: ignore[arg-type]
api("build-not-a-dataset", lambda e, s: Engine.build("data/"), "'dataset'")  # type: ignore[arg-type]
api("build-config-dict", lambda e, s: Engine.build(_tiny_dataset(), {"mix": {}}), "'config'")  # type: ignore[arg-type]
api(
    "config-from-dict-inf",
    lambda e, s: config_from_dict({"mix": {"rrf_k": float("inf")}}),
    "'mix.rrf_k'",
)
api("config-from-dict-list", lambda e, s: config_from_dict([]), "table")  # type: ignore[arg-type]


def _tiny_dataset() -> Dataset:
    cat = pd.DataFrame({"item_id": ["a", "b"]})
    ev = pd.DataFrame(
        {
            "user_id": ["u", "u"],
            "item_id": ["a", "b"],
            "event": "purchase",
            "timestamp": [1_700_000_000, 1_700_000_001],
            "order_id": "o",
        }
    )
    return Dataset.from_frames(cat, ev)


@case("load-unknown-on-bad-rows", "api", "on_bad_rows", "'ignore'")
def _(ctx: Context) -> object:
    return load_dataset(ctx.data, on_bad_rows="ignore")  # type: ignore[arg-type]


@case("load-skip-without-quarantine", "api", "quarantine_dir")
def _(ctx: Context) -> object:
    return load_dataset(ctx.data, on_bad_rows="skip")


@case("load-time-range-reversed", "api", "'time_range'", "empty")
def _(ctx: Context) -> object:
    return load_dataset(ctx.data, time_range=(5, 1))


@case("load-time-range-string", "api", "'time_range'")
def _(ctx: Context) -> object:
    return load_dataset(ctx.data, time_range="2020")  # type: ignore[arg-type]


@case("load-time-range-float", "api", "'time_range'", "int")
def _(ctx: Context) -> object:
    return load_dataset(ctx.data, time_range=(0.5, None))  # type: ignore[arg-type]


@case("engine-load-missing-store", "api", "no recset store")
def _(ctx: Context) -> object:
    return Engine.load(ctx.root / "no-store-here")


@case("engine-load-unknown-version", "api", "version", store=True)
def _(ctx: Context) -> object:
    return Engine.load(ctx.store, version=999)


def _damaged_engine(cid: str, text: str, *expect: str) -> None:
    def act(ctx: Context) -> object:
        copy = ctx.fresh(cid) / "store"
        shutil.copytree(ctx.store, copy)
        (meta,) = copy.rglob("engine.json")
        meta.write_text(text, encoding="utf-8")
        return Engine.load(copy)

    # The version's manifest (size and checksum of every file) catches the damage before the
    # JSON is parsed; `expect` names what the parse-level check says for a version without one.
    del expect
    CASES.append(Case(cid, "files", act, ("engine.json", "damaged")))


_damaged_engine("engine-json-not-json", '{"kind": "eng', "cannot read")
_damaged_engine("engine-json-list", "[]", "expected 'engine'")
_damaged_engine("engine-json-no-meta", '{"kind": "engine", "format_version": 3}', "config")
_damaged_engine(
    "engine-json-meta-no-items",
    '{"kind": "engine", "format_version": 3, "meta": {"config": {}}}',
    "items",
)
_damaged_engine(
    "engine-json-config-infinity",
    '{"kind": "engine", "format_version": 3, "meta": {"config": {"mix": {"rrf_k": Infinity}}, '
    '"items": []}}',
    "'mix.rrf_k'",
)

# --- command-line arguments -------------------------------------------------------------------


def bad_cli(
    cid: str, argv: Callable[[Context], list[str]], *expect: str, store: bool = False
) -> None:
    CASES.append(Case(cid, "cli", lambda ctx: cli(*argv(ctx)), expect, touches_store=store))


def _existing_file(ctx: Context) -> str:
    p = ctx.root / "a-file.txt"
    p.write_text("keep me\n", encoding="utf-8")
    return str(p)


def _build(*more: str) -> Callable[[Context], list[str]]:
    return lambda c: ["build", "--data", str(c.data), "--store", str(c.store), *more]


def _backtest(*more: str) -> Callable[[Context], list[str]]:
    return lambda c: ["backtest", "--data", str(c.data), "--out", str(c.root / "bt"), *more]


def _recommend(*more: str) -> Callable[[Context], list[str]]:
    return lambda c: ["recommend", "--store", str(c.store), c.seed, *more]


def _ingest(src: Callable[[Context], Path], out: Callable[[Context], Path | str]) -> Any:
    return lambda c: ["ingest", "--format", "taobao", str(src(c)), "--out", str(out(c))]


bad_cli("cli-recommend-k-huge", _recommend("--k", "1000000000"), "--k", "1<=x<=10000")
bad_cli("cli-recommend-k-zero", _recommend("--k", "0"), "--k")
bad_cli("recommend-k-word", _recommend("--k", "ten"), "--k")
bad_cli(
    "explain-k-huge",
    lambda c: ["explain", "--store", str(c.store), c.seed, "--k", "2000000000"],
    "--k",
)
bad_cli(
    "recommend-examples-huge",
    lambda c: ["recommend", "--store", str(c.store), "--examples", "1000000000"],
    "--examples",
)
bad_cli("recommend-no-seed", lambda c: ["recommend", "--store", str(c.store)], "at least one SEED")
bad_cli(
    "recommend-missing-store",
    lambda c: ["recommend", "--store", str(c.root / "nope"), "x"],
    "no recset store",
)
bad_cli("backtest-out-file", lambda c: [*_backtest()(c)[:-1], _existing_file(c)], "existing file")
bad_cli(
    "generate-out-file",
    lambda c: ["generate", "--items", "50", "--out", _existing_file(c)],
    "--out",
    "existing file",
)
bad_cli("ingest-out-file", _ingest(lambda c: c.root, _existing_file), "--out", "existing file")
bad_cli(
    "backtest-store-typo",
    _backtest("--store", "/nonexistent/stroe"),
    "--store",
    "--create",
)
bad_cli("backtest-bootstrap-huge", _backtest("--bootstrap", "1000000000"), "--bootstrap")
bad_cli("backtest-split-date", _backtest("--split-date", "soon"), "--split-date")
bad_cli("backtest-baselines", _backtest("--baselines", "nope"), "--baselines", "nope")
bad_cli("backtest-test-share", _backtest("--test-share", "2"), "--test-share")
bad_cli("build-time-range-word", _build("--time-range", "..zz"), "'zz'", store=True)
bad_cli("build-time-range-no-dots", _build("--time-range", "2020"), "FIRST..LAST", store=True)
bad_cli(
    "build-time-range-reversed",
    _build("--time-range", "2030-01-01..2020-01-01"),
    "FIRST is after LAST",
    store=True,
)
bad_cli("build-on-bad-rows-maybe", _build("--on-bad-rows", "maybe"), "--on-bad-rows", store=True)
bad_cli("build-no-store", lambda c: ["build", "--data", str(c.data)], "--store")
bad_cli(
    "ingest-unknown-format",
    lambda c: ["ingest", "--format", "movielens", str(c.root), "--out", str(c.root / "ing")],
    "movielens",
    "complete_journey",
)
bad_cli(
    "ingest-src-missing",
    _ingest(lambda c: c.root / "nope", lambda c: c.root / "ing2"),
    "nope",
    "does not exist",
)
bad_cli(
    "ingest-over-dataset",
    _ingest(lambda c: c.root, lambda c: c.data),
    "already holds a dataset",
    "--force",
)
bad_cli("unknown-command", lambda c: ["rebuild"], "No such command")


def _cj_raw(d: Path, quantity: float = 1.0, sales: float = 2.5) -> Path:
    """A two-row Complete Journey layout (transactions.parquet, products.parquet)."""
    ts = pd.Timestamp("2017-03-01 10:00", tz="UTC")
    pd.DataFrame(
        {
            "household_id": [1, 1],
            "basket_id": [10, 10],
            "product_id": [100, 101],
            "quantity": [quantity, quantity],
            "sales_value": [sales, sales],
            "transaction_timestamp": [ts, ts],
        }
    ).to_parquet(d / "transactions.parquet")
    pd.DataFrame(
        {
            "product_id": [100, 101],
            "manufacturer_id": [7, 7],
            "department": "GROCERY",
            "brand": "National",
            "product_category": "SOUP",
            "product_type": "CANNED",
            "package_size": "10 OZ",
        }
    ).to_parquet(d / "products.parquet")
    return d


@case("ingest-corrupt-parquet-page", "cli", "transactions.parquet", "cannot be read as Parquet")
def _(ctx: Context) -> object:
    src = _cj_raw(ctx.fresh("cj-corrupt"))
    p = src / "transactions.parquet"
    raw = bytearray(p.read_bytes())
    raw[8:300] = b"\xff" * 292
    p.write_bytes(bytes(raw))
    return cli("ingest", "--format", "complete_journey", str(src), "--out", str(src / "out"))


@case("ingest-yields-no-rows", "cli", "no events to write", "nothing was written")
def _(ctx: Context) -> object:
    src = _cj_raw(ctx.fresh("cj-empty"), quantity=0.0)
    out = src / "out"
    try:
        return cli("ingest", "--format", "complete_journey", str(src), "--out", str(out))
    finally:
        assert not out.exists(), "an ingest that failed wrote its output"


@case("ingest-nan-quantity", "cli", "no events to write", "dropped_malformed")
def _(ctx: Context) -> object:
    src = _cj_raw(ctx.fresh("cj-nan"), quantity=float("nan"))
    return cli("ingest", "--format", "complete_journey", str(src), "--out", str(src / "out"))


@case("ingest-infinite-sales", "cli", "no events to write", "dropped_malformed")
def _(ctx: Context) -> object:
    src = _cj_raw(ctx.fresh("cj-inf"), sales=float("inf"))
    return cli("ingest", "--format", "complete_journey", str(src), "--out", str(src / "out"))


# --- accepted on purpose ----------------------------------------------------------------------


def _build_new(
    ctx: Context, name: str, catalog: pd.DataFrame, *extra: str, events: pd.DataFrame | None = None
) -> Engine:
    store = ctx.fresh(name) / "store"
    ctx.build(ctx.write(name, catalog=catalog, events=events), *extra, store=str(store))
    engine = Engine.load(store)
    recs = engine.recommend(ctx.seed, k=5)
    assert len(recs) == 5 and ctx.seed not in {r.item_id for r in recs}
    return engine


@case(
    "catalog-only-item-id",
    "accepted",
    accept=True,
    note="a catalog with only `item_id` builds with the default config: the substitutes, "
    "compatibility and category parts find no attributes and keep every candidate",
)
def _(ctx: Context) -> object:
    return _build_new(ctx, "ids-only", ctx.catalog[["item_id"]])


@case(
    "catalog-ids-and-titles",
    "accepted",
    accept=True,
    note="ids and titles, no category or product type (many retail exports): builds",
)
def _(ctx: Context) -> object:
    return _build_new(ctx, "ids-titles", ctx.catalog[["item_id", "title"]])


@case(
    "integer-ids-and-a-null",
    "accepted",
    accept=True,
    note="integer catalog ids with a null item id in the events: ids are read as text "
    "('12', never '12.0'); only the null row is quarantined",
)
def _(ctx: Context) -> object:
    codes = {v: i for i, v in enumerate(ctx.catalog["item_id"])}
    cat = ctx.catalog.assign(item_id=np.arange(len(ctx.catalog), dtype=np.int64))
    ev = ctx.events.assign(item_id=ctx.events["item_id"].map(codes).astype(float))
    ev.loc[0, "item_id"] = np.nan
    d = ctx.write("int-ids", catalog=cat, events=ev)
    q = ctx.fresh("int-ids-q")
    catalog, events, report = read_validated(d, on_bad_rows="skip", quarantine_dir=q)
    assert len(events) == len(ev) - 1 and [e.row for e in report.errors] == [1]
    assert set(events["item_id"]) <= {str(i) for i in range(len(cat))}


@case(
    "odd-but-valid-ids",
    "accepted",
    accept=True,
    note="ids with emoji, right-to-left text, quotes, SQL-looking text and spaces "
    "are read unchanged (a NUL too, unless the store is PostgreSQL)",
)
def _(ctx: Context) -> object:
    odd = ["🛒 cart", "מוצר", "x'; DROP TABLE catalog; --", ' "quoted" ', "a\x00b", "12.0"]
    cat = ctx.catalog.copy()
    cat.loc[: len(odd) - 1, "item_id"] = odd
    ev = ctx.events.copy()
    mapping = dict(zip(ctx.catalog["item_id"].iloc[: len(odd)], odd, strict=True))
    ev["item_id"] = ev["item_id"].map(lambda i: mapping.get(i, i))
    ds = load_dataset(ctx.write("odd-ids", catalog=cat, events=ev))
    assert all(ds.items.index_one(i) >= 0 for i in odd)


@case(
    "extra-columns",
    "accepted",
    accept=True,
    note="columns outside the format are ignored (logged at INFO)",
)
def _(ctx: Context) -> object:
    ds = load_dataset(
        ctx.write(
            "extra", catalog=ctx.catalog.assign(colour="red"), events=ctx.events.assign(store_id=3)
        )
    )
    assert len(ds.events) == len(ctx.events)


@case(
    "iso-timestamps-with-zones",
    "accepted",
    accept=True,
    note="ISO 8601 timestamps with offsets are read as UTC epoch seconds",
)
def _(ctx: Context) -> object:
    ev = ctx.events.copy()
    secs = ev["timestamp"].astype("int64")
    ev["timestamp"] = (
        pd.to_datetime(secs, unit="s", utc=True)
        .dt.tz_convert("Asia/Tokyo")
        .map(lambda t: t.isoformat())
    )
    ds = load_dataset(ctx.write("iso", events=ev, fmt="csv"))
    assert sorted(ds.events.timestamp.tolist()) == sorted(secs.tolist())


@case(
    "whole-float-timestamps",
    "accepted",
    accept=True,
    note="whole-number float timestamps (a column that passed through a float) are kept",
)
def _(ctx: Context) -> object:
    ev = ctx.events.assign(timestamp=ctx.events["timestamp"].astype(float))
    ds = load_dataset(ctx.write("float-ts", events=ev))
    assert ds.time_range[0] == int(ctx.events["timestamp"].min())


@case("null-price", "accepted", accept=True, note="a missing price means unknown (NaN)")
def _(ctx: Context) -> object:
    ds = load_dataset(ctx.write("null-price", catalog=_set(ctx.catalog, 0, price=None)))
    assert np.isnan(ds.catalog.price[ds.items.index_one(ctx.seed)])


@case(
    "duplicate-event-rows",
    "accepted",
    accept=True,
    note="an event row given twice counts twice (the log is taken as it is)",
)
def _(ctx: Context) -> object:
    ev = pd.concat([ctx.events, ctx.events.iloc[:5]], ignore_index=True)
    ds = load_dataset(ctx.write("dup-events", events=ev))
    assert len(ds.events) == len(ev)


@case(
    "quarantine-replaced",
    "accepted",
    accept=True,
    note="each run's quarantine replaces the last: a clean run removes a stale file",
)
def _(ctx: Context) -> object:
    q = ctx.fresh("quarantine")
    bad = ctx.write("q-bad", events=_set(ctx.events, 0, event="click"))
    read_validated(bad, on_bad_rows="skip", quarantine_dir=q)
    assert (q / "events.bad-rows.csv").exists()
    read_validated(ctx.data, on_bad_rows="skip", quarantine_dir=q)
    assert not (q / "events.bad-rows.csv").exists()


@case(
    "unknown-seed-cold-start",
    "accepted",
    accept=True,
    note="an unknown seed gets the cold-start list, never an error",
)
def _(ctx: Context) -> object:
    assert len(_engine(ctx).recommend("never-seen-item", k=5)) == 5


@case(
    "numpy-string-seed-and-set-exclude",
    "accepted",
    accept=True,
    note="numpy strings are strings; exclude takes any collection (set, tuple, generator)",
)
def _(ctx: Context) -> object:
    e = _engine(ctx)
    first = e.recommend(ctx.seed, k=3)[0].item_id
    recs = e.recommend(np.str_(ctx.seed), k=3, exclude={first})
    assert first not in {r.item_id for r in recs}
    assert e.recommend_batch(np.array([ctx.seed]), exclude=[(i for i in [first])])[0]


@case(
    "examples-above-catalog",
    "accepted",
    accept=True,
    note="`recommend --examples N` with N above the catalog size shows every catalog item",
)
def _(ctx: Context) -> object:
    out = cli("recommend", "--store", str(ctx.store), "--examples", "5000")
    assert out.count("\nseed ") == len(ctx.catalog)


@case(
    "k-above-catalog",
    "accepted",
    accept=True,
    note="a k above the catalog size (within the bound) returns what there is",
)
def _(ctx: Context) -> object:
    recs = _engine(ctx).recommend(ctx.seed, k=10_000)
    assert 0 < len(recs) < len(ctx.catalog)
