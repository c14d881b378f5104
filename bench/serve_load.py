"""Load test of `recset serve` against a bare FastAPI endpoint, with wrk, on loopback only.

Builds two stores from a dataset (once; kept under --work): the engine alone (the
precomputed path) and the engine with a trained ranker (the ranker + user path). Then, each
for a fixed duration and connection count, with wrk (Debian package ``wrk``):

* a bare FastAPI endpoint (same uvicorn settings) returning a constant JSON of the size of a
  real k=10 answer, both as a plain ``def`` and as an ``async def`` (the targets compare
  with the faster of the two);
* ``GET /v1/recommendations?seed=..&k=10`` on the engine alone (precomputed path);
* ``GET /v1/recommendations?seed=..&user=..&k=10`` with the ranker;

at 4 and 32 connections, printing req/s, p50/p99 latency and errors (socket errors and
non-2xx answers). Finally an activation under load: wrk runs at 32 connections while
another engine version is activated in the store; it must fail no request, and the time
until every answer carries the new version is printed. Every server and wrk run stops by
itself (wrk -d; the servers are terminated at the end).

    python bench/serve_load.py --data /work/rd/demo --work /tmp/serve-bench --duration 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]

_LUA = """
local paths = {%(paths)s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, ' ..
    '"connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, "status": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status))
end
"""

_BARE_APP = """
import json, os
from fastapi import FastAPI
CONST = json.loads(open(os.environ["BARE_JSON"]).read())
def app_factory():
    app = FastAPI()
    if os.environ.get("BARE_STYLE") == "async":
        @app.get("/bare")
        async def bare():
            return CONST
    else:
        @app.get("/bare")
        def bare():
            return CONST
    return app
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback only
        return json.loads(r.read())


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if process.poll() is not None:
            raise SystemExit(f"server at {url} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not get ready in {timeout}s")


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def start_recset(store: Path, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "recset.cli", "serve", "--store", str(store)]
    cmd += ["--port", str(port), "--workers", str(workers), "--poll-interval", "1", "--no-neural"]
    with log.open("wb") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=ROOT)
    wait_ready(f"http://127.0.0.1:{port}/readyz", p)
    return p


def start_bare(
    payload: Path, port: int, workers: int, style: str, work: Path
) -> subprocess.Popen[bytes]:
    (work / "bare_app.py").write_text(_BARE_APP, encoding="utf-8")
    cmd = [sys.executable, "-m", "uvicorn", "bare_app:app_factory", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    cmd += ["--no-access-log", "--log-level", "warning"]
    e = {**env(), "BARE_JSON": str(payload), "BARE_STYLE": style}
    p = subprocess.Popen(cmd, cwd=work, env=e, stdout=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/bare", p)
    return p


def stop(p: subprocess.Popen[bytes]) -> None:
    p.terminate()
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def wrk(base: str, paths: list[str], connections: int, duration: int, work: Path) -> dict[str, Any]:
    script = work / f"paths_{abs(hash(tuple(paths))) % 10**8}.lua"
    script.write_text(_LUA % {"paths": ",".join(json.dumps(p) for p in paths)}, encoding="utf-8")
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    cmd += ["-s", str(script), base]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60)
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["status"]
    return r


def prepare(data: Path, work: Path) -> tuple[Path, Path]:
    """The engine-only store (two versions) and a copy with a trained ranker (cached)."""
    plain, ranked = work / "store", work / "store_ranker"
    recset = [sys.executable, "-m", "recset.cli"]
    if not (plain / "recset.sqlite").exists():
        subprocess.run(
            [*recset, "build", "--data", str(data), "--store", str(plain)], check=True, env=env()
        )
        # a second version of the same engine, for the activation under load
        subprocess.run(
            [*recset, "build", "--data", str(data), "--store", str(plain)], check=True, env=env()
        )
    if not (ranked / "recset.sqlite").exists():
        tmp = Path(tempfile.mkdtemp(dir=work))
        shutil.copytree(plain, tmp / "s")
        subprocess.run(
            [*recset, "train-ranker", "--data", str(data), "--store", str(tmp / "s")],
            check=True,
            env=env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        os.rename(tmp / "s", ranked)
        shutil.rmtree(tmp)
    return plain, ranked


def sample_ids(store: Path, n: int) -> tuple[list[str], list[str]]:
    """Known item ids and known user ids (the ranker's) to spread the requests over."""
    import numpy as np

    from recset import Engine

    engine = Engine.load(store, neural=False)
    rng = np.random.default_rng(0)
    items = [str(x) for x in rng.choice(engine.items.values, n)]
    users_map = engine.users
    users = [str(x) for x in rng.choice(users_map.values, n)] if users_map is not None else []
    return items, users


def activation_under_load(
    store: Path, port: int, paths: list[str], duration: int, work: Path
) -> dict[str, Any]:
    """wrk at 32 connections; activate the other engine version a third into the run."""
    from recset.storage import Store

    base = f"http://127.0.0.1:{port}"
    with Store.open(store, create=False) as st:
        versions = [r.version for r in st.list_artifacts("engine")]
        current = st.active_artifact("engine")
    assert current is not None and len(versions) >= 2, "the store needs two engine versions"
    target = next(v for v in reversed(versions) if v != current.version)
    result: dict[str, Any] = {}

    def load() -> None:
        result["wrk"] = wrk(base, paths, 32, duration, work)

    t = threading.Thread(target=load)
    t.start()
    time.sleep(duration / 3)
    with Store.open(store, create=False) as st:
        st.activate("engine", target)
    t0 = time.monotonic()
    streak, served_after = 0, None
    while time.monotonic() - t0 < duration:
        v = get_json(base + paths[0])["version"]
        streak = streak + 1 if v == target else 0
        if streak == 10:  # ten answers in a row: every worker serves it
            served_after = time.monotonic() - t0
            break
        time.sleep(0.02)
    t.join()
    result["served_after_s"] = served_after
    result["from"], result["to"] = current.version, target
    return result


def memory(pid: int) -> str:
    """RSS and PSS (shared pages split between the processes that map them) of a server's
    processes, from /proc (Linux)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            pids.append(int(stat.parent.name))
    rows = []
    for p in pids:
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        kb = {ln.split(":")[0]: int(ln.split()[1]) for ln in text.splitlines()[1:] if "kB" in ln}
        rows.append(f"pid {p}: RSS {kb['Rss'] / 1024:.0f} MB, PSS {kb['Pss'] / 1024:.0f} MB")
    return "; ".join(rows)


def fmt(r: dict[str, Any]) -> str:
    return (
        f"{r['rps']:8.0f} req/s  p50 {r['p50_us'] / 1000:6.2f} ms  p99 {r['p99_us'] / 1000:6.2f} ms"
        f"  errors {r['errors']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/rd/demo"), help="Dataset directory.")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "recset-serve-bench")
    ap.add_argument("--duration", type=int, default=10, help="Seconds per wrk run.")
    ap.add_argument("--workers", type=int, default=1, help="Worker processes of each server.")
    ap.add_argument("--connections", type=int, nargs="+", default=[4, 32])
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    args.work.mkdir(parents=True, exist_ok=True)
    plain, ranked = prepare(args.data, args.work)
    items, users = sample_ids(ranked, 2000)
    pre_paths = [f"/v1/recommendations?seed={quote(i)}&k=10" for i in items]
    rank_paths = [
        f"/v1/recommendations?seed={quote(i)}&user={quote(u)}&k=10"
        for i, u in zip(items, users, strict=True)
    ]

    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = {name: free_port() for name in ("pre", "rank", "bare", "bare_async")}
        procs.append(start_recset(plain, ports["pre"], args.workers, args.work / "pre.log"))
        procs.append(start_recset(ranked, ports["rank"], args.workers, args.work / "rank.log"))
        sample = urllib.request.urlopen(  # noqa: S310
            f"http://127.0.0.1:{ports['pre']}{pre_paths[0]}", timeout=10
        ).read()
        payload = args.work / "bare.json"
        payload.write_bytes(sample)
        procs.append(start_bare(payload, ports["bare"], args.workers, "sync", args.work))
        procs.append(start_bare(payload, ports["bare_async"], args.workers, "async", args.work))
        print(f"memory of the precomputed server: {memory(procs[0].pid)}")
        print(
            f"wrk on loopback, {args.duration} s per run, {args.workers} worker(s) per server, "
            f"answer {len(sample)} bytes (k=10), {os.cpu_count()} CPUs"
        )
        table: dict[tuple[str, int], dict[str, Any]] = {}
        for c in args.connections:
            for name, port, paths in (
                ("bare def", ports["bare"], ["/bare"]),
                ("bare async", ports["bare_async"], ["/bare"]),
                ("precomputed", ports["pre"], pre_paths),
                ("ranker+user", ports["rank"], rank_paths),
            ):
                r = wrk(f"http://127.0.0.1:{port}", paths, c, args.duration, args.work)
                table[(name, c)] = r
                print(f"  {c:>3} conn  {name:<12} {fmt(r)}", flush=True)
        print("activation under load (32 connections, precomputed path):")
        act = activation_under_load(plain, ports["pre"], pre_paths, args.duration, args.work)
        after = act["served_after_s"]
        print(
            f"  engine v{act['from']} -> v{act['to']}: {fmt(act['wrk'])}; every answer from "
            f"v{act['to']} after {f'{after:.2f} s' if after is not None else 'NEVER'}"
        )
    finally:
        for p in procs:
            stop(p)

    print("targets:")
    top = max(args.connections)
    low = min(args.connections)
    bare = max(table[("bare def", top)]["rps"], table[("bare async", top)]["rps"])
    checks = [
        (
            f"precomputed >= 70% of bare at {top} conn",
            table[("precomputed", top)]["rps"] / bare,
            0.7,
        ),
        (
            f"ranker+user >= 30% of bare at {top} conn",
            table[("ranker+user", top)]["rps"] / bare,
            0.3,
        ),
    ]
    for label, ratio, need in checks:
        print(f"  {label}: {ratio:.0%} {'ok' if ratio >= need else 'MISSED'}")
    for name in ("precomputed", "ranker+user"):
        p99 = table[(name, low)]["p99_us"] / 1000
        print(f"  {name} p99 < 20 ms at {low} conn: {p99:.1f} ms {'ok' if p99 < 20 else 'MISSED'}")
    errors = sum(r["errors"] for (name, _), r in table.items() if "bare" not in name)
    errors += act["wrk"]["errors"]
    print(f"  zero errors: {errors} {'ok' if errors == 0 else 'MISSED'}")
    ok = after is not None and after <= 5 and act["wrk"]["errors"] == 0
    print(
        f"  activation under load served within 5 s, no failed request: {'ok' if ok else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
