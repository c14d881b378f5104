"""Settings of the neural personalization stage (no torch import here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Stages = Literal["gnn", "gnn+pr", "gnn+pr+cl"]


class NeuralConfig(BaseModel):
    """Settings of :func:`recset.personalization.train_neural`.

    The model follows Yan et al., *Personalized Complementary Product Recommendation*
    (``shared/seeds/personalized-complementary-recommendation.txt``): a graph network over
    the directed co-purchase-only graph gives product embeddings ``theta`` (Eq. 1-3), a
    transformer over the user's recent purchases gives a user vector ``u`` (Eq. 4), the head
    of the ranker's list is re-ranked by ``||(theta_seed - theta_c) * u||`` (Eq. 5), and the
    user encoder is regularised by contrastive learning over cropped / reordered histories
    (Eq. 6). Distances are squared Euclidean between L2-normalised embeddings.

    Attributes
    ----------
    stages : {"gnn", "gnn+pr", "gnn+pr+cl"}
        What to train: the product graph only (``rerank`` then uses the unweighted
        distance); graph + personalized re-ranking loss (``lambda2`` ignored); graph +
        re-ranking + contrastive loss (the full method).
    embedding_size : int
        Dimension ``k`` of the product embeddings ``theta`` and of the user vector ``u``.
    text_embedding_size : int
        Dimension of the FastText item features computed when ``features`` is not given.
    gnn : {"sage", "gat"}
        ``torch_geometric`` ``SAGEConv`` (mean aggregation) or ``GATConv`` layers.
    gnn_layers : int
        Message-passing layers after the universal embedding module ``Phi``.
    heads : int
        Attention heads of each ``GATConv`` layer (``embedding_size`` must be divisible).
    score : {"distance", "projected"}
        ``"distance"``: the paper's symmetric ``||theta_i - theta_j||^2``. ``"projected"``:
        ``||P(theta_i) - theta_j||^2`` with a learned linear complement projection ``P`` of
        the seed (initialised to the identity), which can tell camera -> SD card from
        SD card -> camera.
    edge_signal : {"co_purchase_only", "co_purchase_directed"}
        Directed complement edges ``i -> j``. ``co_purchase_only`` falls back to
        ``co_purchase_directed`` when it is empty (purchase-only datasets).
    threshold : float
        ``lambda`` of the hinge losses (Eq. 3, 5): positives are pulled under
        ``threshold - margin``, negatives pushed over ``threshold + margin``.
    margin : float
        ``epsilon`` of the hinge losses.
    negatives : int
        Negatives per positive pair (both hinge losses).
    hard_negative_share : float
        Share of the negatives drawn from the positive's category among items never
        co-purchased with the seed; the rest are uniform over the catalog.
    gnn_epochs, gnn_learning_rate, gnn_batch_size : int, float, int
        The graph-only stage: passes over the edges, Adam learning rate, edges per step.
    joint_epochs, joint_learning_rate, joint_batch_size : int, float, int
        The joint stage (``L_G + lambda1 L_PR + lambda2 L_CL``): passes over the
        (seed, co-purchased, user) triples, Adam learning rate, triples per step.
    max_neighbors : int
        Each item keeps its ``max_neighbors`` strongest complement edges (by co-purchase
        count), as PinSage keeps the top neighbours: dense grocery graphs (Complete
        Journey: 23M co-purchase-only pairs) are otherwise too large to pass messages over.
    max_edges : int
        At most this many complement edges (a fresh uniform sample each epoch) train the
        graph stage per epoch; message passing always uses every edge.
    max_triples : int
        At most this many triples (the most recent ones) per joint epoch.
    contrastive_batch_size : int
        Users per step of the contrastive loss (the in-batch negatives).
    user_offset : bool
        Extension of Eq. (5): the user encoder also gives an offset ``v`` of the seed,
        ``||(theta_seed + v - theta_c) * u||``, so a preference (a brand, a colour) can
        move the candidates nearer to what the user likes even when the seed is not of
        it. ``False``: the paper's distance exactly.
    max_history : int
        The user sequence: at most this many most recent purchases.
    transformer_layers, transformer_heads : int
        Depth and heads of the user encoder (``embedding_size`` divisible by the heads).
    dropout : float
        Dropout of the transformer.
    crop_ratio : float
        A crop view keeps ``ceil(crop_ratio * n)`` consecutive purchases of ``n``.
    reorder_ratio : float
        A reorder view shuffles a span of ``ceil(reorder_ratio * n)`` consecutive purchases.
    temperature : float
        ``tau`` of the InfoNCE loss (Eq. 6) over cosine similarities.
    lambda1, lambda2 : float
        Weights of ``L_PR`` and ``L_CL`` in the joint loss.
    personal_score : {"affinity", "distance"}
        What orders the head of a list for a user. ``"affinity"``: the affinity head, a
        transformer over the user's history scoring each candidate by taste (the pooled
        history), target attention (which past purchases speak for it), a copy term
        (whether and how recently the user bought it) and an item bias, trained by softmax
        against sampled competitors; blended with the base list by z-scores within the
        head. ``"distance"``: the personalized distance of Eq. (5), blended by ranks (the
        behaviour of models saved before the affinity head).
    affinity_history : int
        Purchases of the user the affinity head reads (the most recent).
    affinity_item_ids : bool
        Give every item a free embedding in the affinity head besides its text features and
        attributes (more capacity; it memorised the training baskets on the synthetic
        data and lost validation Hit@10 there).
    affinity_epochs, affinity_learning_rate, affinity_batch_size : int, float, int
        Training of the affinity head (Adam).
    affinity_negatives : int
        Sampled competitors per bought item: 3/8 from the seed's ``affinity_pool`` strongest
        co-purchases, 5/16 from the user's own history, the rest by popularity^0.75.
    affinity_pool : int
        The seed's strongest co-purchases competitors are drawn from.
    rerank_n : int
        Length of the head of the base list that is re-ranked (20..200).
    blend_weight : float or None
        Weight of the personalized rank against the base rank in ``rerank``; ``None``:
        chosen on a validation split of the training data (the most recent baskets).
    blend_grid : tuple of float
        Candidate blend weights for the validation choice.
    validation_share : float
        Share of the training baskets (the most recent) held out to choose the blend.
    refit_on_full : bool
        After choosing the blend on the held-out baskets, train again on all of the
        training data (twice the training time; otherwise the newest baskets only reach the
        model through the user histories).
    device : {"auto", "cpu", "cuda"}
        ``"auto"``: CUDA with mixed precision when available, else CPU.
    seed : int
        Seed of weights, sampling and dropout; CPU training repeats exactly.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: Stages = "gnn+pr+cl"
    embedding_size: int = Field(64, ge=4, le=1024)
    text_embedding_size: int = Field(48, ge=2, le=1024)
    gnn: Literal["sage", "gat"] = "sage"
    gnn_layers: int = Field(2, ge=1, le=6)
    heads: int = Field(2, ge=1, le=16)
    score: Literal["distance", "projected"] = "projected"
    edge_signal: Literal["co_purchase_only", "co_purchase_directed"] = "co_purchase_only"
    threshold: float = Field(1.0, gt=0)
    margin: float = Field(0.5, ge=0)
    negatives: int = Field(4, ge=1, le=64)
    hard_negative_share: float = Field(0.5, ge=0, le=1)
    gnn_epochs: int = Field(8, ge=0)
    gnn_learning_rate: float = Field(5e-3, gt=0)
    gnn_batch_size: int = Field(4096, ge=1)
    joint_epochs: int = Field(2, ge=0)
    joint_learning_rate: float = Field(2e-3, gt=0)
    joint_batch_size: int = Field(1024, ge=1)
    max_neighbors: int = Field(20, ge=1)
    max_edges: int = Field(50_000, ge=1)
    max_triples: int = Field(50_000, ge=1)
    contrastive_batch_size: int = Field(256, ge=2)
    user_offset: bool = True
    max_history: int = Field(20, ge=1, le=512)
    transformer_layers: int = Field(2, ge=1, le=12)
    transformer_heads: int = Field(2, ge=1, le=16)
    dropout: float = Field(0.1, ge=0, lt=1)
    crop_ratio: float = Field(0.6, gt=0, le=1)
    reorder_ratio: float = Field(0.3, gt=0, le=1)
    temperature: float = Field(0.2, gt=0)
    lambda1: float = Field(1.0, ge=0)
    lambda2: float = Field(0.1, ge=0)
    personal_score: Literal["affinity", "distance"] = "affinity"
    affinity_history: int = Field(50, ge=1, le=512)
    affinity_item_ids: bool = False
    affinity_epochs: int = Field(8, ge=1)
    affinity_learning_rate: float = Field(3e-3, gt=0)
    affinity_batch_size: int = Field(512, ge=1)
    affinity_negatives: int = Field(16, ge=4, le=256)
    affinity_pool: int = Field(50, ge=1, le=1000)
    rerank_n: int = Field(100, ge=20, le=200)
    blend_weight: float | None = Field(None, ge=0, le=1)
    blend_grid: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    validation_share: float = Field(0.1, gt=0, lt=0.5)
    refit_on_full: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> NeuralConfig:
        if self.gnn == "gat" and self.embedding_size % self.heads:
            raise ValueError(
                f"The 'embedding_size' parameter of NeuralConfig must be divisible by 'heads' "
                f"({self.heads}) when gnn='gat'. Got {self.embedding_size} instead."
            )
        if self.embedding_size % self.transformer_heads:
            raise ValueError(
                "The 'embedding_size' parameter of NeuralConfig must be divisible by "
                f"'transformer_heads' ({self.transformer_heads}). Got {self.embedding_size} "
                "instead."
            )
        if not self.blend_grid or any(not 0.0 <= w <= 1.0 for w in self.blend_grid):
            raise ValueError(
                "The 'blend_grid' parameter of NeuralConfig must be a non-empty tuple of "
                f"floats in [0, 1]. Got {self.blend_grid!r} instead."
            )
        return self

    @property
    def personalized(self) -> bool:
        """Whether the user encoder is trained (``stages`` other than ``"gnn"``)."""
        return self.stages != "gnn"

    @property
    def effective_lambda2(self) -> float:
        """``lambda2``, or 0 unless ``stages`` is ``"gnn+pr+cl"``."""
        return self.lambda2 if self.stages == "gnn+pr+cl" else 0.0
