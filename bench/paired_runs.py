"""Two validation runs compared on the same queries: a paired 95% bootstrap interval.

``bench/discovery_variants.py`` and ``bench/feature_validation.py`` compare variants inside
one run, which shares one engine. A change to the engine itself (a recall source's setting,
under another ``--config``) needs two runs; each writes its per-query hits with
``--save-hits``, and this script pairs them (the queries must be the same, in the same order:
the same data, split and ``--max-queries``; the baskets are checked):

    python bench/discovery_variants.py --data /work/rd/instacart --split leave_last \\
        --variants sar+sarcand+cuts3+bag3+tlift --save-hits /tmp/annoy.npz
    python bench/discovery_variants.py --data /work/rd/instacart --split leave_last \\
        --variants sar+sarcand+cuts3+bag3+tlift --config exact.toml --save-hits /tmp/exact.npz
    python bench/paired_runs.py /tmp/annoy.npz /tmp/exact.npz

Every system found in both files is compared (``B - A``), queries of one basket resampled
together; ``--pair NAME_A NAME_B`` compares system ``NAME_A`` of the first file with
``NAME_B`` of the second instead (one variant against another, each run on its own, e.g. under
``--seeds``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def load(path: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``({system: per-query hits}, baskets)`` of a ``--save-hits`` file."""
    try:
        with np.load(path, allow_pickle=False) as f:
            names, hits, basket = f["names"], f["hits"], f["basket"]
    except FileNotFoundError:
        sys.exit(f"{path}: no such file (write it with --save-hits)")
    except KeyError as e:
        sys.exit(f"{path}: not a --save-hits file (no array {e})")
    if hits.shape != (len(names), len(basket)):
        sys.exit(f"{path}: expected hits of shape ({len(names)}, {len(basket)}), got {hits.shape}")
    return {str(n): hits[i] for i, n in enumerate(names)}, basket


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="the reference run's --save-hits file")
    ap.add_argument("b", help="the other run's --save-hits file")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument(
        "--pair",
        nargs=2,
        metavar=("NAME_A", "NAME_B"),
        default=None,
        help="compare system NAME_A of the first file with NAME_B of the second",
    )
    args = ap.parse_args()

    from recset.eval._result import paired_difference

    a, basket_a = load(args.a)
    b, basket_b = load(args.b)
    if not np.array_equal(basket_a, basket_b):
        sys.exit(
            f"{args.a} and {args.b} hold different queries ({len(basket_a):,} and "
            f"{len(basket_b):,}): run both on the same data, split and --max-queries"
        )
    if args.pair:
        name_a, name_b = args.pair
        for name, hits, path in ((name_a, a, args.a), (name_b, b, args.b)):
            if name not in hits:
                sys.exit(f"{path}: no system {name!r} (it holds {', '.join(hits)})")
        pairs = [(f"{name_a} -> {name_b}", name_a, name_b)]
    else:
        pairs = [(n, n, n) for n in a if n in b]
        if not pairs:
            sys.exit(f"{args.a} and {args.b} share no system name")
    print(f"{len(basket_a):,} queries")
    print("| system | A | B | B - A (95% CI) |\n|---|---:|---:|---:|")
    for label, name_a, name_b in pairs:
        d = paired_difference(a[name_a], b[name_b], basket_a, n_boot=args.n_boot)
        print(
            f"| {label} | {d['a']:.4f} | {d['b']:.4f} | "
            f"{d['diff']:+.4f} ({d['low']:+.4f}..{d['high']:+.4f}) |"
        )


if __name__ == "__main__":
    main()
