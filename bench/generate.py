"""Benchmark the synthetic generator: generate + write Parquet, per catalog size.

Each size runs in its own subprocess so that peak memory (``ru_maxrss``) is per size.

Usage::

    .venv/bin/python bench/generate.py --items 100000,1000000 --events-per-item 10
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


def _run_one(n_items: int, events_per_item: int, seed: int) -> dict[str, float]:
    from recset.data._format import write_dataset
    from recset.data.synthetic import SyntheticConfig, generate

    config = SyntheticConfig(n_items=n_items, n_events=events_per_item * n_items, seed=seed)
    with tempfile.TemporaryDirectory(prefix="recset-bench-") as tmp:
        t0 = time.perf_counter()
        data = generate(config)
        t1 = time.perf_counter()
        text = json.dumps(data.truth, separators=(",", ":"))
        write_dataset(data.catalog, data.events, tmp, extra_files={"truth.json": text})
        t2 = time.perf_counter()
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "items": n_items,
        "events": len(data.events),
        "generate_s": t1 - t0,
        "write_s": t2 - t1,
        "seconds": t2 - t0,
        "peak_mib": peak_kib / 1024,
        "disk_mib": size / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--items",
        default="100000,1000000",
        help="comma-separated catalog sizes (default: 100000,1000000)",
    )
    parser.add_argument("--events-per-item", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        print(json.dumps(_run_one(args.child, args.events_per_item, args.seed)))
        return 0

    sizes = [int(s.replace("_", "")) for s in args.items.split(",") if s.strip()]
    header = (
        f"{'items':>10} {'events':>11} {'gen s':>7} {'write s':>8} {'seconds':>8} "
        f"{'items/s':>10} {'events/s':>11} {'peak MiB':>9} {'disk MiB':>9}"
    )
    print(header, flush=True)
    for n in sizes:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(n),
            "--events-per-item",
            str(args.events_per_item),
            "--seed",
            str(args.seed),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{n:>10} failed (exit {proc.returncode}):\n{proc.stderr}", file=sys.stderr)
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{r['items']:>10,} {r['events']:>11,} {r['generate_s']:>7.1f} {r['write_s']:>8.1f} "
            f"{r['seconds']:>8.1f} {r['items'] / r['seconds']:>10,.0f} "
            f"{r['events'] / r['seconds']:>11,.0f} {r['peak_mib']:>9,.0f} {r['disk_mib']:>9,.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
