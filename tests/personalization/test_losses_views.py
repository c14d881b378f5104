"""Losses against hand-computed values; contrastive views; the config (no training)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recset.personalization import NeuralConfig
from recset.personalization._data import augment

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from recset.personalization._modules import (  # noqa: E402
    hinge_loss,
    info_nce,
    squared_distance,
)


def test_hinge_eq3_hand_computed() -> None:
    theta_i = torch.tensor([[0.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0]])  # d = 1
    neg = torch.tensor([[0.0, 0.5]])  # d = 0.25
    d_pos = squared_distance(theta_i, pos)
    d_neg = squared_distance(theta_i, neg)
    # threshold 1, margin 0.5: positive max(0, 0.5 - (1 - 1)) = 0.5,
    # negative max(0, 0.5 + (1 - 0.25)) = 1.25
    assert float(hinge_loss(d_pos, 1.0, 1.0, 0.5)) == pytest.approx(0.5)
    assert float(hinge_loss(d_neg, -1.0, 1.0, 0.5)) == pytest.approx(1.25)
    # satisfied pairs cost nothing
    assert float(hinge_loss(torch.tensor([0.1]), 1.0, 1.0, 0.5)) == 0.0
    assert float(hinge_loss(torch.tensor([2.0]), -1.0, 1.0, 0.5)) == 0.0


def test_personalized_distance_eq5_hand_computed() -> None:
    seed = torch.tensor([[1.0, 2.0, 0.0]])
    cand = torch.tensor([[0.0, 0.0, 3.0]])
    u = torch.tensor([[2.0, 0.5, 0.0]])
    # ((1-0)*2)^2 + ((2-0)*0.5)^2 + ((0-3)*0)^2 = 4 + 1 + 0
    d = squared_distance(seed, cand, u)
    assert float(d) == pytest.approx(5.0)
    loss = hinge_loss(d, 1.0, 1.0, 0.5)  # max(0, 0.5 - (1 - 5)) = 4.5
    assert float(loss) == pytest.approx(4.5)


def test_info_nce_eq6_hand_computed() -> None:
    u1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    u2 = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    # cosine similarities: row 0 -> (1, 0), row 1 -> (0, 1/sqrt2)
    s = np.array([[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]]) / tau
    expected = np.mean([-(s[i, i] - math.log(np.exp(s[i]).sum())) for i in range(2)])
    assert float(info_nce(u1, u2, tau)) == pytest.approx(expected, rel=1e-5)


def _is_contiguous_sub(view: list[int], seq: list[int]) -> bool:
    n = len(view)
    return any(seq[i : i + n] == view for i in range(len(seq) - n + 1))


def _is_span_permutation(view: list[int], seq: list[int]) -> bool:
    """Same length, same multiset, and differs from ``seq`` only inside one contiguous span
    whose contents are a permutation of the original span."""
    if len(view) != len(seq) or sorted(view) != sorted(seq):
        return False
    diff = [i for i in range(len(seq)) if view[i] != seq[i]]
    if not diff:
        return True
    lo, hi = diff[0], diff[-1] + 1
    return sorted(view[lo:hi]) == sorted(seq[lo:hi])


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=12), min_size=1, max_size=8),
    crop=st.floats(0.05, 1.0),
    reorder=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31),
)
def test_views_are_crops_or_span_reorders(
    rows: list[list[int]], crop: float, reorder: float, seed: int
) -> None:
    h = 12
    hist = np.full((len(rows), h), -1, dtype=np.int64)
    for r, seq in enumerate(rows):
        hist[r, : len(seq)] = seq
    length = np.array([len(seq) for seq in rows])
    view, n = augment(
        hist, length, np.random.default_rng(seed), crop_ratio=crop, reorder_ratio=reorder
    )
    assert view.shape == hist.shape
    for r, seq in enumerate(rows):
        assert 1 <= n[r] <= min(len(seq), h)
        v = view[r, : n[r]].tolist()
        assert (view[r, n[r] :] == -1).all()
        assert _is_contiguous_sub(v, seq) or _is_span_permutation(v, seq)


def test_config_validation() -> None:
    NeuralConfig()
    with pytest.raises(ValueError):
        NeuralConfig(rerank_n=10)
    with pytest.raises(ValueError):
        NeuralConfig(rerank_n=201)
    with pytest.raises(ValueError):
        NeuralConfig(unknown_key=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        NeuralConfig(gnn="gat", embedding_size=30, heads=4)
    assert NeuralConfig(stages="gnn+pr").effective_lambda2 == 0.0
    assert NeuralConfig(stages="gnn+pr+cl", lambda2=0.3).effective_lambda2 == 0.3
    assert not NeuralConfig(stages="gnn").personalized


def test_import_recset_does_not_import_torch() -> None:
    code = (
        "import sys, recset, recset.personalization\n"
        "from recset.personalization import NeuralConfig\n"
        "NeuralConfig()\n"
        "print('torch' in sys.modules, 'torch_geometric' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_complement_edges_keep_the_strongest_neighbours() -> None:
    import scipy.sparse as sp

    from recset.personalization._data import complement_edges

    class _Sig:  # the one attribute complement_edges reads
        co_purchase_only = sp.csr_matrix(
            np.array([[0, 3, 1, 2], [5, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0]], dtype=np.float32)
        )

    edges, used = complement_edges(_Sig(), "co_purchase_only", max_neighbors=2)  # type: ignore[arg-type]
    assert used == "co_purchase_only"
    # row 0 keeps 1 (3) and 3 (2); row 1 keeps 0; row 3 keeps its two lowest ids on ties
    assert edges.T.tolist() == [[0, 1], [0, 3], [1, 0], [3, 0], [3, 1]]
    full, _ = complement_edges(_Sig(), "co_purchase_only")
    assert full.shape[1] == 7
