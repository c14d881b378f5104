"""Figures of the malformed-input corpus (docs/reliability.md, "Malformed inputs").

Runs every case of ``tests/reliability/inputs_corpus.py`` against a freshly built store and
prints one Markdown table: per group, the inputs tried, clear errors (a RecsetError or a usage
error whose message names the file, row or key), unclear errors (refused, but the message lacks
what it should name), tracebacks, silent acceptances, inputs accepted on purpose (and any of
those refused), and cases after which the store's files or answers changed. Then every case
that is not what it should be, with the first lines of what the user saw.

    PYTHONPATH=. .venv/bin/python bench/reliability_inputs.py
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = (
    ("tried", "inputs tried"),
    ("clear", "clear errors"),
    ("unclear", "unclear errors"),
    ("traceback", "tracebacks"),
    ("silent", "silent acceptances"),
    ("accepted", "accepted on purpose"),
    ("rejected", "refused, though accepted on purpose"),
    ("store changed", "store changed"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--show", type=int, default=6, help="message lines shown per odd case")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))
    import inputs_corpus as corpus

    logging.disable(logging.WARNING)  # the cases' own log lines are not the figures
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ctx = corpus.make_context(Path(tmp))
        t1 = time.perf_counter()
        outcomes = {c.id: (c, corpus.run_case(c, ctx)) for c in corpus.CASES}
        t2 = time.perf_counter()
        unchanged = ctx.store_unchanged()
    counts = corpus.tally(outcomes)
    print("| group | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for group in ("rows", "files", "config", "api", "cli", "accepted", "all"):
        c = counts.get(group)
        if c:
            name = f"**{group}**" if group == "all" else group
            print(f"| {name} | " + " | ".join(str(c[key]) for key, _ in COLUMNS) + " |")
    print(
        f"\n{len(outcomes)} cases in {t2 - t1:.1f}s (+ {t1 - t0:.1f}s to build the store); "
        f"store files and answers identical at the end: {unchanged}"
    )
    odd = [
        (c, o)
        for c, o in outcomes.values()
        if o.kind not in ("clear", "accepted") or o.store_changed
    ]
    for case, outcome in odd:
        lines = outcome.message.strip().splitlines()[-args.show :]
        changed = " (store changed)" if outcome.store_changed else ""
        print(f"\n{case.group}/{case.id}: {outcome.kind}{changed}")
        for line in lines:
            print(f"    {line}")


if __name__ == "__main__":
    main()
