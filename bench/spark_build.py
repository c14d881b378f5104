"""In-process vs Spark: fit of the behavioural sources (co_purchase, co_view, co_purchase_only,
popular) with the default config, on a generated dataset.

Each mode runs in its own child process, so its peak memory is its own: the Python process's
peak RSS (``ru_maxrss``) and, for Spark, the peak RSS (``VmHWM``) of the driver JVM (in
``local[N]`` mode the executors run inside it, so that is all of Spark's memory). Both modes
load and validate the dataset in the driver first (the Spark build needs the id maps; the
stages after the fit need the dataset); ``fit`` is the part Spark replaces. The fitted state of
both modes is saved and compared: the script says whether they are equal. The load average is
printed at the start and the end: the machine may be shared.

    .venv/bin/python bench/spark_build.py --items 100000 --events 1000000
    .venv/bin/python bench/spark_build.py --items 1000000 --events 10000000 \\
        --spark-conf spark.driver.memory=6g
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: what the Spark build fits of the default config (``popular`` from per-item counts made on
#: Spark; the runs recorded before that was wired in fitted the three pair sources only)
SOURCES = ("co_purchase", "co_view", "co_purchase_only", "popular")
PAIR_SOURCES = SOURCES[:3]


def _jvm_peak_mib() -> tuple[float, float]:
    """Peak RSS (MiB) and CPU seconds (user + system) of the java processes started by this
    process (the Spark driver)."""
    me = str(os.getpid())
    peak = cpu = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[1] != me:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"java" not in f.read():
                    continue
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024.0)
            cpu += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError):
            continue
    return peak, cpu


def shuffle_totals(event_log: Path) -> dict[str, float]:
    """Bytes and records shuffled (written, read) and spilled, records read from input, and
    the executors' CPU seconds, summed over every finished task of a Spark event log; and
    the number of jobs, stages and tasks."""
    tot: dict[str, float] = {"shuffle_write_bytes": 0, "shuffle_read_bytes": 0}
    tot["spill_disk_bytes"] = 0
    tot.update(shuffle_write_records=0, input_records=0, executor_cpu_s=0, jobs=0, stages=0)
    tot["tasks"] = 0
    with open(event_log) as f:
        for line in f:
            if '"SparkListenerJobStart"' in line:
                tot["jobs"] += 1
            if '"SparkListenerStageCompleted"' in line:
                tot["stages"] += 1
            if '"SparkListenerTaskEnd"' not in line:
                continue
            tot["tasks"] += 1
            m = json.loads(line).get("Task Metrics") or {}
            w = m.get("Shuffle Write Metrics", {})
            r = m.get("Shuffle Read Metrics", {})
            tot["shuffle_write_bytes"] += w.get("Shuffle Bytes Written", 0)
            tot["shuffle_write_records"] += w.get("Shuffle Records Written", 0)
            tot["executor_cpu_s"] += m.get("Executor CPU Time", 0) / 1e9
            tot["shuffle_read_bytes"] += r.get("Remote Bytes Read", 0) + r.get(
                "Local Bytes Read", 0
            )
            tot["spill_disk_bytes"] += m.get("Disk Bytes Spilled", 0)
            tot["input_records"] += m.get("Input Metrics", {}).get("Records Read", 0)
    tot["executor_cpu_s"] = round(tot["executor_cpu_s"], 1)
    return tot


def child(mode: str, data: Path, out: Path, master: str, conf: list[str]) -> None:
    import logging

    from recset.config import config_from_dict
    from recset.data import load_dataset
    from recset.recall import get_recall
    from recset.signals import Signals

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    cfg = config_from_dict({})
    b = cfg.build
    t0 = time.perf_counter()
    ds = load_dataset(data)
    load_s = time.perf_counter() - t0
    jvm = jvm_cpu = 0.0
    shuffle: dict[str, float] = {}
    t1 = time.perf_counter()
    if mode == "inprocess":
        signals = Signals(
            ds, half_life_days=b.half_life_days or None, max_group_size=b.max_group_size
        )
        specs = cfg.source_configs()
        fitted = {}
        for name in SOURCES:
            kind, c = specs[name]
            fitted[name] = get_recall(kind)(c).fit(ds, signals)
        start_s = 0.0
    else:
        from recset.spark import fit_behaviour_sources, parse_conf, spark_session

        logs = out / "spark-events"
        logs.mkdir(exist_ok=True)
        extra = {
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": logs.resolve().as_uri(),
            # one plain JSON-lines file per run (Spark 4 rolls and compresses by default)
            "spark.eventLog.rolling.enabled": "false",
            "spark.eventLog.compress": "false",
        }
        # shuffle partitions: recset's default for a local master (two per core), unless
        # --spark-conf spark.sql.shuffle.partitions=N
        session = spark_session(master, {"spark.ui.enabled": "false", **extra, **parse_conf(conf)})
        session.sparkContext.setLogLevel("ERROR")
        app = session.sparkContext.applicationId
        start_s = time.perf_counter() - t1
        fitted = fit_behaviour_sources(session, data, ds, cfg)
        jvm, jvm_cpu = _jvm_peak_mib()
        partitions = session.conf.get("spark.sql.shuffle.partitions")
        session.stop()
        shuffle = shuffle_totals(logs / app)
    fit_s = time.perf_counter() - t1
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    python_cpu = cpu.ru_utime + cpu.ru_stime
    arrays = {
        f"{name}.{attr}": getattr(src, attr)
        for name, src in fitted.items()
        if name in SOURCES
        for attr in src._state
    }
    np.savez(out / f"state-{data.name}-{mode}.npz", allow_pickle=False, **arrays)
    result = {
        "mode": mode,
        "load_s": round(load_s, 1),
        "session_start_s": round(start_s, 1),
        "fit_s": round(fit_s, 1),
        "python_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
        "jvm_peak_mib": round(jvm),
        "python_cpu_s": round(python_cpu, 1),
        "jvm_cpu_s": round(jvm_cpu, 1),
        "pairs_kept": {n: int(len(fitted[n].neighbors_)) for n in PAIR_SOURCES},
        "events_parquet_mib": round((data / "events.parquet").stat().st_size / 2**20, 1),
        **shuffle,
    }
    if mode == "spark":
        result["shuffle_partitions"] = partitions
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench-out/spark_build"))
    ap.add_argument("--modes", default="inprocess,spark")
    ap.add_argument("--spark-master", default="local[2]")
    ap.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--child", choices=["inprocess", "spark"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.data, a.out, a.spark_master, a.spark_conf)
        return
    data = a.out / f"data-{a.items}-{a.events}-{a.seed}"
    a.out.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    if not (data / "events.parquet").exists():
        from recset.data.synthetic import SyntheticConfig, write_synthetic

        t = time.perf_counter()
        write_synthetic(
            SyntheticConfig(n_items=a.items, n_events=a.events, seed=a.seed), data, force=True
        )
        print(f"generated {data} in {time.perf_counter() - t:.1f} s", flush=True)
    results = {}
    for mode in a.modes.split(","):
        cmd = [sys.executable, __file__, "--child", mode, "--data", str(data), "--out", str(a.out)]
        cmd += ["--spark-master", a.spark_master]
        for c in a.spark_conf:
            cmd += ["--spark-conf", c]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-5000:])
            raise SystemExit(f"{mode} failed (exit {proc.returncode})")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        results[mode] = json.loads(line[len("RESULT ") :])
        results[mode]["wall_s"] = round(time.perf_counter() - t, 1)
        print(json.dumps(results[mode]), flush=True)
    paths = [a.out / f"state-{data.name}-{m}.npz" for m in ("inprocess", "spark")]
    if all(p.exists() for p in paths):  # this run's or an earlier one's on the same data
        x, y = (np.load(p) for p in paths)
        same = set(x.files) == set(y.files) and all(np.array_equal(x[k], y[k]) for k in x.files)
        print(f"fitted state equal in both modes: {same}", flush=True)
    print(f"load average at end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
