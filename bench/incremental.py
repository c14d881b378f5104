"""Benchmark incremental builds: one day of new events appended to a built store vs a full
rebuild on all the events.

A synthetic dataset (default 100k items, 1M events over 180 days) is cut at the start of its
last day: the baskets and sessions that start on that day are the new events (whole groups, as
``recset build --append`` requires), the rest is the base. Each phase runs in its own
subprocess, so its peak memory (``ru_maxrss``) is its own:

1. ``base``: full build on the base events with ``[build] incremental = true``, saved;
2. ``append``: ``append_engine`` of the last day into that store (a new version);
3. ``full``: full build on base + last day, saved to a second store;
4. ``compare``: the appended and the fully rebuilt lists, side by side.

Usage::

    .venv/bin/python bench/incremental.py --items 100000 --events 1000000
    .venv/bin/python bench/incremental.py --items 100000 --events 1000000 \
        --sources co_purchase,co_view
    .venv/bin/python bench/incremental.py --items 100000 --events 1000000 --engine spark

``--engine spark``: the append counts the day's pairs on Spark (``recset build --append
--engine spark``, a ``--spark-master`` session started in the append phase; its start is
reported apart as ``session_start_s`` and is not in ``step_s``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _config(sources: str) -> dict[str, Any]:
    return {
        "build": {"incremental": True, "half_life_days": 30.0},
        "mix": {"sources": sources.split(","), "filters": []},
    }


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _prepare(root: Path, items: int, events: int, seed: int) -> dict[str, Any]:
    import numpy as np

    from recset.data._format import write_dataset, write_events_parquet
    from recset.data.synthetic import SyntheticConfig, generate

    syn = generate(SyntheticConfig(n_items=items, n_events=events, seed=seed))
    ev = syn.events
    day_start = int(ev["timestamp"].max()) - 86_400
    late = np.zeros(len(ev), dtype=bool)
    for col in ("session_id", "order_id"):  # a group that starts on the last day is new
        ids = ev[col]
        first = ev.groupby(ids)["timestamp"].transform("min").to_numpy()
        has = ids.notna().to_numpy()
        late[has] |= first[has] >= day_start
    loose = ev["session_id"].isna().to_numpy() & ev["order_id"].isna().to_numpy()
    late[loose] = ev["timestamp"].to_numpy()[loose] >= day_start
    for _ in range(3):  # one id on each side: the whole group goes to the new day
        for col in ("session_id", "order_id"):
            moved = ev[col][late].dropna().unique()
            late |= ev[col].isin(moved).to_numpy(dtype=bool)
    write_dataset(syn.catalog, ev[~late], root / "base")
    write_dataset(syn.catalog, ev, root / "union")
    write_events_parquet(ev[late].reset_index(drop=True), root / "day.parquet")
    return {"events": len(ev), "base_events": int((~late).sum()), "day_events": int(late.sum())}


def _phase(
    phase: str, root: Path, sources: str, engine: str = "inprocess", master: str = "local[2]"
) -> dict[str, Any]:
    from recset.config import config_from_dict
    from recset.data import load_dataset
    from recset.engine import Engine, append_engine

    config = config_from_dict(_config(sources))
    t0, c0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {"phase": phase}
    if phase in ("base", "full"):
        ds = load_dataset(root / ("base" if phase == "base" else "union"))
        t1 = time.perf_counter()
        engine = Engine.build(ds, config)
        t2 = time.perf_counter()
        engine.save(root / f"store-{phase}", dataset=ds)
        out |= {"load_s": t1 - t0, "build_s": t2 - t1, "save_s": time.perf_counter() - t2}
    elif phase == "append" and engine == "spark":
        from recset.spark import SparkPairCounter, spark_session

        session = spark_session(master, {"spark.ui.enabled": "false"})
        session.sparkContext.setLogLevel("ERROR")
        out["session_start_s"] = time.perf_counter() - t0
        counter = SparkPairCounter(session)
        report = append_engine(root / "store-base", root / "day.parquet", pair_counter=counter)
        out["jvm_cpu_s"] = _jvm_cpu_s()
        session.stop()
        out |= {
            "engine": "spark",
            "remixed_seeds": report.n_remixed,
            "rows_recomputed": report.rows_recomputed,
            "step_s": report.seconds,
        }
    elif phase == "append":
        report = append_engine(root / "store-base", root / "day.parquet")
        out |= {
            "version": report.version,
            "remixed_seeds": report.n_remixed,
            "seeds": report.n_seeds,
            "rows_recomputed": report.rows_recomputed,
            "rescored": report.rescored,
            "step_s": report.seconds,
        }
    else:  # compare
        import numpy as np

        a = Engine.load(root / "store-base", neural=False).mixer.lists
        b = Engine.load(root / "store-full", neural=False).mixer.lists
        assert a is not None and b is not None
        finite = np.isfinite(b.score)
        out |= {
            "rows_differing": int((a.item != b.item).any(axis=1).sum()),
            "max_score_diff": float(np.abs(a.score[finite] - b.score[finite]).max()),
        }
    out |= {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "peak_mib": _peak_mib(),
    }
    return out


def _jvm_cpu_s() -> float:
    """CPU seconds (user + system) of the java processes this process started."""
    import os

    me, tick, cpu = str(os.getpid()), os.sysconf("SC_CLK_TCK"), 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                java = b"java" in f.read()
        except OSError:
            continue
        if fields[1] == me and java:
            cpu += (int(fields[11]) + int(fields[12])) / tick
    return cpu


def _child(argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child {argv} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sources",
        default="co_purchase,co_view,popular",
        help="the mix (popular is the fallback either way; in the mix, its daily reordering "
        "re-mixes most lists)",
    )
    parser.add_argument("--root", type=Path, default=None, help="work directory (kept)")
    parser.add_argument("--engine", choices=["inprocess", "spark"], default="inprocess")
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        root = Path(args.root)
        if args.child == "prepare":
            print(json.dumps(_prepare(root, args.items, args.events, args.seed)))
        else:
            phase = _phase(args.child, root, args.sources, args.engine, args.spark_master)
            print(json.dumps(phase))
        return 0
    with tempfile.TemporaryDirectory(prefix="recset-bench-incr-") as tmp:
        root = args.root or Path(tmp)
        common = ["--root", str(root), "--items", str(args.items), "--seed", str(args.seed)]
        sizes = _child(["--child", "prepare", "--events", str(args.events), *common])
        common += ["--sources", args.sources, "--engine", args.engine]
        common += ["--spark-master", args.spark_master]
        print(f"{args.items:,} items, mix {args.sources}: {sizes}")
        rows = {p: _child(["--child", p, *common]) for p in ("base", "append", "full", "compare")}
    for row in rows.values():
        print(json.dumps(row))
    a, f = rows["append"], rows["full"]
    print(
        f"append one day ({sizes['day_events']:,} events): {a['wall_s']:.1f} s wall, "
        f"{a['cpu_s']:.1f} s CPU, peak {a['peak_mib']:.0f} MiB; full rebuild "
        f"({sizes['events']:,} events): {f['wall_s']:.1f} s wall, {f['cpu_s']:.1f} s CPU, "
        f"peak {f['peak_mib']:.0f} MiB; lists differing: {rows['compare']['rows_differing']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
