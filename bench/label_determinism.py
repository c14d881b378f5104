"""Fingerprints of the discovery model's label set, to compare runs of the same code.

Builds what ``bench/discovery_variants.py`` builds for the shipped discovery model
(``sar+sarcand+cuts3``, the ranker's own validation cut: the test window thrown away, the
training part cut again, three label windows inside it) up to the labelled queries, without
training anything, and prints a SHA-256 prefix of every stage: the text embeddings, each
window's mix (``Mixer.top``), discovery candidates, feature matrix, labels and kept queries.
``--repeat N`` builds it N times in one process; two processes (or machines) are compared by
their printed lines (``--out FILE`` also writes them as JSON).

    python bench/label_determinism.py --data /work/rd/instacart --split leave_last --repeat 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from typing import Any

import numpy as np

from recset.config import config_from_dict, load_config
from recset.data import basket_queries, leave_last_split, load_dataset, time_split
from recset.ranking._ranker import fit_features, labelled_queries
from recset.recall import Mixer, embed_items


def digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _cut(ds: Any, split: str, share: float) -> Any:
    return leave_last_split(ds) if split == "leave_last" else time_split(ds, test_share=share)


def fingerprints(ds: Any, config: Any, split: str, cuts: int, seed: int) -> dict[str, Any]:
    """Stage fingerprints of one build of the label set (see the module docstring)."""
    rc = config.ranker
    share = rc.label_share
    train = _cut(ds, split, 0.2).train
    val = _cut(train, split, share)
    out: dict[str, Any] = {}
    emb = embed_items(val.train)
    out["embeddings"] = digest(emb)
    valid_user = np.random.default_rng(seed).random(val.train.n_users) < rc.valid_share
    rest = val.train
    total = 0
    for c in range(1, cuts + 1):
        inner = _cut(rest, split, share)
        fit_part, label = inner.train, inner.test
        rest = fit_part
        mixer = Mixer.fit(fit_part, config)
        for name, src in mixer.sources.items():
            out[f"cut{c}/source/{name}"] = source_digest(src)
        feats = fit_features(
            fit_part,
            mixer,
            embeddings=emb,
            user_candidates=rc.user_candidates,
            extra_features=("hist_sar", "seed_sar"),
        )
        q = basket_queries(label)
        is_valid = valid_user[q.user] if split == "leave_last" else np.zeros(len(q), bool)
        it = np.flatnonzero(~is_valid)
        cap_t = int(rc.max_queries * (1 - rc.valid_share))
        if len(it) > cap_t:
            it = np.sort(np.random.default_rng(seed + c).choice(it, cap_t, replace=False))
        qt = q.take(it)
        top = mixer.top(qt.seed, rc.candidates)
        out[f"cut{c}/top.item"] = digest(top.item)
        out[f"cut{c}/top.score"] = digest(top.score, top.source_score, top.source_rank)
        X, y, g, users = labelled_queries(
            mixer, feats, qt, rc.candidates, discover=rc.discover_candidates, n_sar=50
        )
        out[f"cut{c}/X"] = digest(X)
        out[f"cut{c}/y"] = digest(y, g, users)
        out[f"cut{c}/label_queries"] = int(len(g))
        for j, name in enumerate(feats.names):
            out[f"cut{c}/X/{name}"] = digest(X[:, j])
        total += len(g)
    out["label_queries"] = total
    return out


def source_digest(src: Any) -> str:
    """A digest of a fitted source's numpy / scipy attributes (those ending in ``_``)."""
    import scipy.sparse as sp

    parts = []
    for k in sorted(vars(src)):
        v = getattr(src, k)
        if not k.endswith("_"):
            continue
        if isinstance(v, np.ndarray) and v.dtype != object:
            parts.append(v)
        elif sp.issparse(v):
            v = v.tocsr()
            parts += [v.indptr, v.indices, v.data]
    return digest(*parts) if parts else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="leave_last")
    ap.add_argument("--config", default=None)
    ap.add_argument("--cuts", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    config = load_config(args.config) if args.config else config_from_dict({})
    ds = load_dataset(args.data)
    runs = []
    for r in range(args.repeat):
        t0 = time.perf_counter()
        fp = fingerprints(ds, config, args.split, args.cuts, args.seed)
        runs.append(fp)
        print(f"run {r}: {time.perf_counter() - t0:.0f} s", flush=True)
        for k, v in fp.items():
            print(f"{k}\t{v}", flush=True)
    if len(runs) > 1:
        diff = sorted({k for fp in runs[1:] for k in fp if fp.get(k) != runs[0].get(k)})
        print(f"differing stages between runs in this process: {diff or 'none'}")
    if args.out:
        env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        with open(args.out, "w") as f:
            json.dump({"env": env, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
