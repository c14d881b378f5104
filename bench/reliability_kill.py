"""Releases under crashes, concurrent builds and damaged artifacts (issue 12).

For each backend and each fault phase of a build (``RECSET_FAULT``: fit, catalog, artifact,
activate, rename) a store holding release A gets a ``recset build`` of dataset B that dies
at that phase (a real ``python -m recset.cli build`` subprocess). The table counts what
changed in what the store serves (active versions, live catalog, every item's top-10) and
whether the next build of B succeeds with nothing left behind. Then pairs of builds are
started at once into one empty store, and every tampering case of
``recset.testing.releases.tamper_cases`` is applied to a copy of a store and loaded.

    PYTHONPATH=. .venv/bin/python bench/reliability_kill.py --items 2000 --users 800 \\
        --events 60000 --backends sqlite,postgresql

Dataset B has A's items with every third one unavailable and the first fifth of A's events
dropped; the default config (all sources) is used unless --small.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--users", type=int, default=800)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pairs", type=int, default=3, help="concurrent build pairs per backend")
    ap.add_argument("--small", action="store_true", help="three cheap sources, not the default")
    args = ap.parse_args()

    from recset import RecsetError
    from recset.config import load_config
    from recset.data import load_dataset
    from recset.engine import Engine
    from recset.storage import FAULT_EXIT_CODE, FAULT_PHASES
    from recset.testing import releases

    root = Path(tempfile.mkdtemp(prefix="recset-kill-"))
    data_a, data_b = releases.make_datasets(
        root, items=args.items, users=args.users, events=args.events
    )
    config = None
    if args.small:
        config = root / "small.toml"
        config.write_text(releases.SMALL_CONFIG)
    cfg = load_config(config)
    a = load_dataset(data_a)
    engine_a = Engine.build(a, cfg)
    prefixes: list[str] = []
    url = releases.pg_url()

    def new_store(tag: str, backend: str) -> tuple[str, Path | None]:
        if backend == "sqlite":
            return str(root / f"{tag}-{uuid.uuid4().hex[:6]}"), None
        prefix = f"tb{uuid.uuid4().hex[:8]}_"
        prefixes.append(prefix)
        return releases.with_prefix(url, prefix), root / f"art-{prefix}"

    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and releases.pg_unreachable_reason(url):
        print(f"PostgreSQL unreachable ({releases.pg_unreachable_reason(url)}): skipped")
        backends.remove("postgresql")

    ref_store, _ = new_store("ref-b", "sqlite")
    code, out = releases.start_build(data_b, ref_store, config, log=root / "ref.log").wait()
    if code != 0:
        raise SystemExit(f"the reference build of B failed:\n{out}")
    ref_b = releases.served(ref_store)
    print(
        f"kill test: {args.items:,} items, {args.events:,} events, "
        f"{'small' if args.small else 'default'} config, {len(ref_b.answers):,} answers "
        "(top-10 of every catalog item) per store\n"
    )
    print(
        "| backend | killed at | exit | versions changed | catalog changed | answers changed "
        "| next build | leftovers after | serves B after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        totals = {"kills": 0, "changed": 0, "next_ok": 0}
        for backend in backends:
            for phase in FAULT_PHASES:
                store, art = new_store(f"kill-{phase}", backend)
                engine_a.save(store, artifact_dir=art, dataset=a)
                before = releases.served(store, art)
                run = releases.start_build(
                    data_b,
                    store,
                    config,
                    artifact_dir=art,
                    fault=phase,
                    log=root / f"{backend}-{phase}.log",
                )
                code, _ = run.wait()
                after = releases.served(store, art)
                changed = after.answers_changed(before)
                nxt, out = releases.start_build(
                    data_b, store, config, artifact_dir=art, log=root / f"{backend}-{phase}-2.log"
                ).wait()
                left = releases.leftovers(store, art)
                now = releases.served(store, art) if nxt == 0 else None
                serves_b = now is not None and (now.catalog, now.answers) == (
                    ref_b.catalog,
                    ref_b.answers,
                )
                totals["kills"] += code == FAULT_EXIT_CODE
                totals["changed"] += changed
                totals["next_ok"] += nxt == 0
                print(
                    f"| {backend} | {phase} | {code} | {after.versions != before.versions} | "
                    f"{after.catalog != before.catalog} | {changed} of {len(before.answers)} | "
                    f"{'ok' if nxt == 0 else f'exit {nxt}'} | {len(left)} | {serves_b} |"
                )
        n = len(backends) * len(FAULT_PHASES)
        print(
            f"\n{totals['kills']} of {n} builds killed at their phase; answers changed after "
            f"a kill: {totals['changed']}; next builds that succeeded: {totals['next_ok']} of {n}"
        )

        print(
            "\n| backend | pair | exit codes (A, B) | refused with the lock message | "
            "serves one whole release | leftovers |"
        )
        print("|---|---|---|---|---|---|")
        ref_a_store, _ = new_store("ref-a", "sqlite")
        engine_a.save(ref_a_store, dataset=a)
        refs = {"a": releases.served(ref_a_store), "b": ref_b}
        for backend in backends:
            for i in range(args.pairs):
                store, art = new_store(f"pair{i}", backend)
                runs = {
                    name: releases.start_build(
                        data, store, config, artifact_dir=art, log=root / f"pair-{name}-{i}.log"
                    )
                    for name, data in (("a", data_a), ("b", data_b))
                }
                res = {name: r.wait() for name, r in runs.items()}
                refused = sum(
                    c == 2 and "Another recset process is building" in o for c, o in res.values()
                )
                now = releases.served(store, art)
                whole = any(
                    (now.catalog, now.answers) == (refs[nm].catalog, refs[nm].answers)
                    for nm, (c, _) in res.items()
                    if c == 0
                )
                print(
                    f"| {backend} | {i + 1} | {res['a'][0]}, {res['b'][0]} | {refused} | "
                    f"{whole} | {len(releases.leftovers(store, art))} |"
                )

        print("\n| tampering case | refused at load | error names the file | seconds to refuse |")
        print("|---|---|---|---|")
        pristine = root / "pristine"
        engine_a.save(pristine, dataset=a)
        refused_n = 0
        cases = releases.tamper_cases()
        for name, case in cases.items():
            copy = root / f"tamper-{uuid.uuid4().hex[:6]}"
            shutil.copytree(pristine, copy)
            case.apply(copy / "artifacts" / "engine" / "v1")
            t0 = time.perf_counter()
            try:
                Engine.load(copy)
                refused, names = False, False
            except RecsetError as exc:
                refused, names = True, case.names in str(exc)
            refused_n += refused and names
            print(f"| {name} | {refused} | {names} | {time.perf_counter() - t0:.2f} |")
        print(f"\n{refused_n} of {len(cases)} tampered versions refused with the file named")
        from recset.storage import Store

        t0 = time.perf_counter()
        Engine.load(pristine)
        load_s = time.perf_counter() - t0
        with Store.open(pristine) as st:
            record = st.active_artifact("engine")
            t0 = time.perf_counter()
            path = st.verify_artifact(record)  # type: ignore[arg-type]
            verify_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(
            f"checking the manifest of the engine version ({size / 1e6:.1f} MB): "
            f"{verify_s:.2f} s of a {load_s:.2f} s Engine.load"
        )
    finally:
        if prefixes:
            releases.drop_store(url, prefixes)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
