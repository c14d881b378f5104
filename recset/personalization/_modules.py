"""torch modules and losses of the neural stage: product graph network, user encoder.

Imported only through :func:`recset.personalization._torch.require_torch`, which raises a
clear error when torch / torch_geometric are missing.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recset.personalization._config import NeuralConfig

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- losses


def hinge_loss(distance: Tensor, y: Tensor | float, threshold: float, margin: float) -> Tensor:
    """Eq. (3) / (5): ``max(0, margin - y * (threshold - distance))``, averaged.

    Parameters
    ----------
    distance : Tensor of float, any shape
        (Weighted) squared distances.
    y : Tensor or float
        ``+1`` for positive pairs (pulled under ``threshold - margin``), ``-1`` for
        negatives (pushed over ``threshold + margin``); broadcast against ``distance``.
    threshold, margin : float
        ``lambda`` and ``epsilon`` of the paper.

    Returns
    -------
    Tensor, scalar
    """
    return torch.clamp(margin - y * (threshold - distance), min=0.0).mean()


def squared_distance(a: Tensor, b: Tensor, weight: Tensor | None = None) -> Tensor:
    """``||(a - b) * weight||^2`` over the last axis (Eq. 3 without, Eq. 5 with ``u``).

    Shapes broadcast: ``a`` (..., d), ``b`` (..., d), ``weight`` (..., d) or None.
    """
    diff = a - b
    if weight is not None:
        diff = diff * weight
    return (diff * diff).sum(dim=-1)


def info_nce(u1: Tensor, u2: Tensor, temperature: float) -> Tensor:
    """Eq. (6): InfoNCE over cosine similarities, in-batch negatives, averaged.

    ``-log( exp(s(u1_i, u2_i)/t) / sum_k exp(s(u1_i, u2_k)/t) )`` with ``s`` the cosine
    similarity; the other users' second views are the negatives ``S-``.

    Parameters
    ----------
    u1, u2 : Tensor of float, shape (B, d)
        The two views' user vectors; row ``i`` of both belongs to the same user.
    temperature : float

    Returns
    -------
    Tensor, scalar
    """
    z1 = F.normalize(u1.float(), dim=-1)
    z2 = F.normalize(u2.float(), dim=-1)
    logits = z1 @ z2.T / temperature
    target = torch.arange(len(z1), device=z1.device)
    return F.cross_entropy(logits, target)


# --------------------------------------------------------------------------- product graph


class ProductGraph(nn.Module):
    """Phi (Eq. 1) then message passing over the complement graph; L2-normalised output.

    ``Phi(T) = BatchNorm((T W1 + b1) W2 + b2)`` maps the text features of every item to
    ``k`` dimensions; ``gnn_layers`` ``SAGEConv`` / ``GATConv`` layers (ELU between them)
    aggregate each item's complements (messages flow ``j -> i`` for an edge ``i -> j``), with
    a residual connection so that items without edges (cold start) keep their feature
    embedding. With ``score="projected"`` a linear map ``P`` (identity at start) turns a
    seed's ``theta`` into the point its complements should be near.
    """

    def __init__(self, in_dim: int, config: NeuralConfig) -> None:
        super().__init__()
        from torch_geometric.nn import GATConv, SAGEConv

        k = config.embedding_size
        self.phi = nn.Sequential(nn.Linear(in_dim, k), nn.Linear(k, k), nn.BatchNorm1d(k))
        self.convs = nn.ModuleList()
        for _ in range(config.gnn_layers):
            if config.gnn == "gat":
                self.convs.append(GATConv(k, k // config.heads, heads=config.heads))
            else:
                self.convs.append(SAGEConv(k, k, aggr="mean"))
        self.projected = config.score == "projected"
        self.project = nn.Linear(k, k)
        with torch.no_grad():
            self.project.weight.copy_(torch.eye(k))
            self.project.bias.zero_()

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Product embeddings ``theta``.

        Parameters
        ----------
        x : Tensor of float32, shape (n_items, in_dim)
        edge_index : Tensor of int64, shape (2, n_edges)
            Message direction: row 0 sends, row 1 receives (complement -> seed).

        Returns
        -------
        Tensor of float32, shape (n_items, k), unit rows
        """
        h = self.phi(x)
        for layer, conv in enumerate(self.convs):
            out = conv(h, edge_index)
            if layer < len(self.convs) - 1:
                out = F.elu(out)
            h = h + out
        return F.normalize(h.float(), dim=-1)

    def query(self, theta: Tensor) -> Tensor:
        """Seed-side embedding: ``normalize(P theta)`` when projected, else ``theta``."""
        if not self.projected:
            return theta
        return F.normalize(self.project(theta).float(), dim=-1)


# --------------------------------------------------------------------------- user encoder


def _history_transformer(config: NeuralConfig) -> nn.TransformerEncoder:
    """The transformer over a purchase history (``transformer_layers`` x
    ``transformer_heads``, width ``embedding_size``, batch first)."""
    k = config.embedding_size
    layer = nn.TransformerEncoderLayer(
        d_model=k,
        nhead=config.transformer_heads,
        dim_feedforward=2 * k,
        dropout=config.dropout,
        batch_first=True,
    )
    return nn.TransformerEncoder(
        layer, num_layers=config.transformer_layers, enable_nested_tensor=False
    )


class UserEncoder(nn.Module):
    """Transformer over a user's most recent purchases (Eq. 4).

    Input tokens are the purchased items' ``theta`` plus a learned embedding of their
    recency (1 = most recent); a learned CLS token is prepended and its final hidden state
    is the user vector ``u``.
    """

    def __init__(self, config: NeuralConfig) -> None:
        super().__init__()
        k = config.embedding_size
        self.max_history = config.max_history
        self.cls = nn.Parameter(torch.zeros(1, 1, k))
        self.position = nn.Embedding(config.max_history + 1, k)
        self.input_norm = nn.LayerNorm(k)
        self.encoder = _history_transformer(config)
        self.out = nn.Linear(k, k)
        self.offset = nn.Linear(k, k)
        nn.init.normal_(self.cls, std=0.02)
        with torch.no_grad():
            # start near the neutral weighting u = 1 (the unweighted distance)
            self.out.weight.mul_(0.1)
            self.out.bias.fill_(1.0)
            # the seed offset starts at 0: Eq. (5) exactly
            self.offset.weight.zero_()
            self.offset.bias.zero_()

    def forward(self, tokens: Tensor, length: Tensor) -> Tensor:
        """User vectors ``u`` (the output layer over :meth:`hidden`).

        Parameters
        ----------
        tokens : Tensor of float, shape (B, H, k)
            ``theta`` of the history items, left-aligned in time order.
        length : Tensor of int64, shape (B,)
            Number of real items per row (the rest is padding).

        Returns
        -------
        Tensor of float32, shape (B, k)
        """
        return self.out(self.hidden(tokens, length)).float()

    def with_offset(self, tokens: Tensor, length: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, v)``: the weighting ``u`` and a seed offset ``v`` (both (B, k)), for the
        distance ``||(q_seed + v - theta_c) * u||^2`` (``v = 0`` is Eq. 5)."""
        h = self.hidden(tokens, length)
        return self.out(h).float(), self.offset(h).float()

    def hidden(self, tokens: Tensor, length: Tensor) -> Tensor:
        """The transformer's final CLS state, shape (B, k) (what the contrastive loss sees:
        ``u`` itself starts as the constant neutral weighting, where cosine similarity says
        nothing)."""
        bsz, h, _ = tokens.shape
        pos = torch.arange(h, device=tokens.device)[None, :]
        valid = pos < length[:, None]
        recency = torch.where(valid, length[:, None] - pos, torch.zeros_like(pos))
        x = self.input_norm(tokens + self.position(recency))
        x = torch.cat([self.cls.expand(bsz, -1, -1), x], dim=1)
        pad = torch.cat([torch.zeros(bsz, 1, dtype=torch.bool, device=x.device), ~valid], dim=1)
        return self.encoder(x, src_key_padding_mask=pad)[:, 0]


# --------------------------------------------------------------------------- affinity head


BASE_FEATURES = 2
"""Training only: log(1 + co-purchases of the seed and the candidate), log(1 + purchases)."""
ITEM_REPEAT_FEATURES = 3
"""Per (user, candidate): log(1 + times bought), 1 / recency of the last purchase, bought."""


def repeat_features(
    candidates: Tensor, history: Tensor, length: Tensor, attributes: Tensor | None = None
) -> Tensor:
    """What a user's own history says about each candidate, shape (B, N, 3 + 2 A).

    ``log(1 + c)`` with ``c`` the times the candidate occurs in the history, ``1 / r`` with
    ``r`` the recency of its last occurrence (1 = the most recent purchase; 0 when absent),
    and whether it occurs at all; then for each of the ``A`` item attributes (category,
    type, brand, common aspects) the share of the history with the candidate's value and
    ``1 / r`` of the last such purchase (0 where the candidate's value is unknown).

    Parameters
    ----------
    candidates : Tensor of int64, shape (B, N)
    history : Tensor of int64, shape (B, H)
        Left-aligned in time order, padded with -1.
    length : Tensor of int64, shape (B,)
    attributes : Tensor of int64, shape (n_items, A), optional
        Attribute value ids per item, -1 unknown.
    """
    h = history.shape[1]
    pos = torch.arange(h, device=history.device)[None, :]
    valid = pos < length[:, None]
    zero = torch.zeros((), device=history.device)
    recency = 1.0 / (length[:, None] - pos).clamp(min=1).float()  # (B, H)
    same = (candidates[:, :, None] == history[:, None, :]) & valid[:, None, :]
    count = same.sum(dim=-1).float()
    last = torch.where(same, recency[:, None, :], zero).amax(dim=-1)
    out = [torch.log1p(count), last, (count > 0).float()]
    if attributes is not None and attributes.shape[1]:
        n = length.clamp(min=1)[:, None].float()
        ca = attributes[candidates.clamp(min=0)]  # (B, N, A)
        ha = attributes[history.clamp(min=0)]  # (B, H, A)
        for a in range(attributes.shape[1]):
            m = (ca[:, :, None, a] == ha[:, None, :, a]) & valid[:, None, :]
            m = m & (ca[:, :, None, a] >= 0)
            out.append(m.sum(dim=-1).float() / n)
            out.append(torch.where(m, recency[:, None, :], zero).amax(dim=-1))
    return torch.stack(out, dim=-1)


class AffinityHead(nn.Module):
    """What a user's purchase history adds to a candidate's score (a residual).

    Items are ``psi = LayerNorm(W x) + sum_a E[attribute_a]`` (``x`` their text features;
    ``attribute_a`` their category, type, brand and common aspects, see
    :func:`recset.personalization._affinity.item_attributes`; plus a free per-item
    embedding with ``affinity_item_ids``). A transformer reads the history's ``psi`` plus a
    recency embedding. A candidate ``c`` gets the personal score

    ``s(c) = <u, psi_c> + <attend(psi_c, H), psi_c> + g(repeat(c))``

    with ``u`` the pooled history (the user's taste), ``attend`` a target attention of the
    candidate over the encoded history ``H`` (which past purchases speak for it) and ``g``
    a small network over :func:`repeat_features` (the copy term of repeat-aware
    recommenders: whether and how recently the user bought the candidate itself, and how
    much of the history shares each of its attributes).

    In training the score also has a non-personal part, a linear term of the candidate's
    co-purchases with the seed and its popularity (:data:`BASE_FEATURES`) plus a per-item
    bias, standing in for the base list the stage re-ranks: so ``s`` learns only what the
    user adds to it, and serving (where the ranker is the base) uses ``s`` alone.
    """

    def __init__(
        self, features: Tensor, attributes: Tensor, config: NeuralConfig, history: int
    ) -> None:
        super().__init__()
        n_items, in_dim = features.shape
        k = config.embedding_size
        self.register_buffer("features", features.float(), persistent=False)
        self.register_buffer("attributes", attributes.long(), persistent=False)
        # one table for every attribute's values (+1 per attribute for "unknown")
        sizes = (attributes.max(dim=0).values + 2).tolist() if attributes.shape[1] else []
        offsets = [0, *list(np.cumsum(sizes))[:-1]] if sizes else []
        self.register_buffer(
            "attribute_offset", torch.as_tensor(offsets, dtype=torch.long), persistent=False
        )
        self.attribute = nn.Embedding(max(int(sum(sizes)), 1), k)
        nn.init.normal_(self.attribute.weight, std=0.1)
        self.feature = nn.Sequential(nn.Linear(in_dim, k), nn.LayerNorm(k))
        self.item_id = nn.Embedding(n_items, k) if config.affinity_item_ids else None
        self.bias = nn.Embedding(n_items, 1)
        self.base = nn.Linear(BASE_FEATURES, 1)
        self.position = nn.Embedding(history + 1, k)
        self.input_norm = nn.LayerNorm(k)
        self.encoder = _history_transformer(config)
        self.user = nn.Linear(k, k)
        self.key = nn.Linear(k, k)
        self.value = nn.Linear(k, k)
        n_repeat = ITEM_REPEAT_FEATURES + 2 * attributes.shape[1]
        self.repeat = nn.Sequential(nn.Linear(n_repeat, 16), nn.ReLU(), nn.Linear(16, 1))
        self.scale = float(k) ** -0.5
        if self.item_id is not None:
            nn.init.normal_(self.item_id.weight, std=0.01)
        nn.init.zeros_(self.bias.weight)

    def items(self, ids: Tensor) -> Tensor:
        """``psi`` of item ids (any shape; -1 padding gives zeros), shape (..., k)."""
        safe = ids.clamp(min=0)
        psi = self.feature(self.features[safe])
        if self.item_id is not None:
            psi = psi + self.item_id(safe)
        if len(self.attribute_offset):
            values = self.attributes[safe] + 1 + self.attribute_offset  # (..., A)
            psi = psi + self.attribute(values).sum(dim=-2)
        return psi * (ids >= 0).unsqueeze(-1).to(psi.dtype)

    def terms(self, history: Tensor, length: Tensor, candidates: Tensor) -> tuple[Tensor, ...]:
        """The personal score's three terms (taste, attention, repeat), each (B, N)."""
        h = history.shape[1]
        pos = torch.arange(h, device=history.device)[None, :]
        valid = pos < length[:, None]
        recency = torch.where(valid, length[:, None] - pos, torch.zeros_like(pos))
        x = self.input_norm(self.items(history) + self.position(recency))
        enc = self.encoder(x, src_key_padding_mask=~valid)
        enc = enc * valid.unsqueeze(-1).to(enc.dtype)
        pooled = enc.sum(dim=1) / length.clamp(min=1)[:, None].to(enc.dtype)
        psi = self.items(candidates)  # (B, N, k)
        taste = (psi * self.user(pooled)[:, None, :]).sum(-1) * self.scale
        logits = torch.einsum("bnk,bhk->bnh", psi, self.key(enc)) * self.scale
        logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
        context = torch.einsum("bnh,bhk->bnk", torch.softmax(logits, dim=-1), self.value(enc))
        attend = (context * psi).sum(-1) * self.scale
        rep = self.repeat(repeat_features(candidates, history, length, self.attributes)).squeeze(-1)
        return taste, attend, rep

    def forward(
        self, history: Tensor, length: Tensor, candidates: Tensor, base: Tensor | None = None
    ) -> Tensor:
        """Personal scores (B, N) of ``candidates`` (B, N) for histories (B, H) of
        ``length`` >= 1; with ``base`` (B, N, :data:`BASE_FEATURES`), the training score
        (plus the non-personal part). Padding candidates (-1) get ``-inf``.
        """
        taste, attend, rep = self.terms(history, length, candidates)
        score = taste + attend + rep
        if base is not None:
            score = score + self.base(base).squeeze(-1)
            score = score + self.bias(candidates.clamp(min=0)).squeeze(-1)
        return score.masked_fill(candidates < 0, float("-inf"))
