"""Text embeddings, their Annoy neighbours and the log features: the same bits on any x86-64 CPU.

OpenBLAS picks its kernels by the CPU (``OPENBLAS_CORETYPE`` forces one), and they add in
different orders: gensim's FastText training through BLAS gave other vectors under another
kernel, and with them other neighbours, candidates and ranker label sets between machines.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recset.recall._text import _capsule_pointer, portable_fasttext

_EMBED = """
import hashlib, sys
import numpy as np
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.recall._text import TextEmbeddingConfig, embed_items
from recset.recall.complementary_of_similar import neighbor_table

syn = generate(SyntheticConfig(n_items=800, seed=3))
ds = Dataset.from_frames(syn.catalog, syn.events)
emb = embed_items(ds, TextEmbeddingConfig(embedding_size=16, epochs=2))
idx, sim = neighbor_table(emb, np.ones(len(emb), bool), np.ones(len(emb), bool), 10,
                          n_trees=4, search_k=200, seed=0)
for a in (emb, idx, sim):
    print(hashlib.sha256(a.tobytes()).hexdigest())
"""


def _openblas_x86() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    from threadpoolctl import threadpool_info

    return any(i.get("internal_api") == "openblas" for i in threadpool_info())


@pytest.mark.slow
@pytest.mark.skipif(not _openblas_x86(), reason="needs OpenBLAS on x86-64")
def test_embeddings_and_neighbours_do_not_depend_on_the_blas_kernel() -> None:
    # Prescott (SSE3), Sandybridge (AVX) and Haswell (AVX2 + FMA) run on any CPU with AVX2:
    # each stands in for a machine whose OpenBLAS chose that kernel
    root = Path(__file__).resolve().parents[1]
    out = {}
    for core in ("Prescott", "Sandybridge", "Haswell"):
        env = {**os.environ, "OPENBLAS_CORETYPE": core, "PYTHONPATH": str(root)}
        run = subprocess.run(
            [sys.executable, "-c", _EMBED], env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr[-2000:]
        out[core] = run.stdout.split()
    assert out["Prescott"] == out["Sandybridge"] == out["Haswell"], out


def test_portable_fasttext_points_gensim_to_its_own_loops_and_back() -> None:
    from gensim.models import word2vec_inner

    capi = word2vec_inner.__pyx_capi__

    def pointer(name: str) -> int | None:
        return ctypes.c_void_p.from_address(_capsule_pointer(capi[name])).value

    before = pointer("our_dot"), pointer("our_saxpy")
    with portable_fasttext() as switched:
        assert switched
        assert pointer("our_dot") == _capsule_pointer(capi["our_dot_noblas"])
        assert pointer("our_saxpy") == _capsule_pointer(capi["our_saxpy_noblas"])
    assert (pointer("our_dot"), pointer("our_saxpy")) == before
    with pytest.raises(RuntimeError), portable_fasttext():
        raise RuntimeError("a failed training restores them too")
    assert (pointer("our_dot"), pointer("our_saxpy")) == before


def test_portable_fasttext_leaves_another_gensim_major_alone(monkeypatch, caplog) -> None:  # noqa: ANN001
    import gensim
    from gensim.models import word2vec_inner

    capi = word2vec_inner.__pyx_capi__
    before = ctypes.c_void_p.from_address(_capsule_pointer(capi["our_dot"])).value
    monkeypatch.setattr(gensim, "__version__", "5.0.0")
    with caplog.at_level("WARNING"), portable_fasttext() as switched:
        assert not switched
        assert ctypes.c_void_p.from_address(_capsule_pointer(capi["our_dot"])).value == before
    assert "gensim 5.0.0 is not a 4.x release" in caplog.text


def test_portable_fasttext_trains_as_gensims_plain_loops() -> None:
    """Training inside the context repeats exactly and gives finite, trained vectors."""
    from gensim.models import FastText

    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(60)]
    corpus = [list(rng.choice(vocab, 6)) for _ in range(200)]

    def train() -> np.ndarray:
        m = FastText(vector_size=8, min_count=1, epochs=2, seed=0, workers=1, bucket=1000)
        m.build_vocab(corpus_iterable=corpus)
        start = m.wv.vectors_vocab.copy()
        with portable_fasttext():
            m.train(corpus_iterable=corpus, total_examples=len(corpus), epochs=2)
        assert not np.array_equal(m.wv.vectors_vocab, start)
        return m.wv.vectors_vocab.copy()

    a = train()
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, train())


def test_log_features_are_float64_logs() -> None:
    # numpy's float32 log1p differs in the last bit between its AVX-512 and AVX2 code; the
    # features take the log of float64 values, whose differences the float32 matrix rounds off
    from types import SimpleNamespace

    from recset.ranking._builtin_features import CandPopLog, UserNPurchasesLog

    pop = np.array([0.5, 3.7, 1e6 / 7, 123.456], dtype=np.float32)
    f = CandPopLog()
    f.item_pop_ = pop
    np.testing.assert_array_equal(f.item_values(), np.log1p(pop.astype(np.float64)))
    batch = SimpleNamespace(c=np.array([3, 0, 2]))
    np.testing.assert_array_equal(f.transform(batch), np.log1p(pop[[3, 0, 2]].astype(np.float64)))
    g = UserNPurchasesLog()
    g.user_n_ = np.array([1, 5, 77], dtype=np.float32)
    got = g.transform(SimpleNamespace(u_ok=np.array([True, True, False]), uu=np.array([0, 2, 1])))
    np.testing.assert_array_equal(got, [np.log1p(1.0), np.log1p(77.0), np.nan])
