"""torch modules and losses of the neural stage: product graph network, user encoder.

Imported only through :func:`recset.personalization._torch.require_torch`, which raises a
clear error when torch / torch_geometric are missing.
"""

from __future__ import annotations

import logging

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
        layer = nn.TransformerEncoderLayer(
            d_model=k,
            nhead=config.transformer_heads,
            dim_feedforward=2 * k,
            dropout=config.dropout,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            layer, num_layers=config.transformer_layers, enable_nested_tensor=False
        )
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
