"""Configuration of the type-transition model (importable without torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recset.errors import ConfigError

__all__ = ["TypeTransitionConfig"]


class TypeTransitionConfig(BaseModel):
    """Hyperparameters of :func:`~recset.personalization._type_transition.train_type_transition`.

    Frozen; unknown keys are rejected. Build it from untrusted input with
    :meth:`from_dict`, which raises :class:`~recset.errors.ConfigError`.

    Attributes
    ----------
    level : {"auto", "product_type", "category"}
        The catalog column whose values are the "types". ``"auto"`` takes ``product_type``
        when any item has one, else ``category``.
    exclude : {"substitution", "any"}
        Which co-purchases train the model, as in the ``co_purchase_only`` recall source:
        ``"substitution"`` (default) uses :attr:`Signals.co_purchase_only_substitution`
        (directed co-purchases whose co-views were never comparisons); ``"any"`` uses the
        strict :attr:`Signals.co_purchase_only`. Seed types that have no pair in the chosen
        signal (the strict one drops every pair whose items were also viewed in one session,
        which in a browse-then-buy catalog is every anchor -> accessory pair) take their
        pairs from :attr:`Signals.co_purchase_directed`; so does the whole model when the
        signal is empty (purchase-only data).
    embedding_size : int
        Dimension ``d`` of the type embeddings.
    n_complements : int
        ``M``: complementary type embeddings the transition network predicts per seed type,
        and the length of each seed type's predicted complement list.
    hidden_size : int
        Width of the transition network's hidden layer.
    margin : float
        Additive margin on the positive's distance in the softmax loss (>= 0): the positive
        must be closer than the negatives by about this much before the loss saturates.
    epochs : int
        Passes over the type pairs.
    learning_rate : float
        Adam learning rate.
    batch_size : int
        Type pairs per step.
    negatives : int
        Negative types sampled uniformly per positive pair (the seed's own type is always
        added as one more negative: same-type items are substitutes, not complements).
    min_pair_count : float
        Type pairs with a (decayed) co-purchase count below this are dropped before training.
    strategy : {"cap", "rounds"}
        How a list is diversified. ``"cap"`` keeps the incoming (ranker) order, allows at
        most ``max_per_type`` items of one type in the top ``k`` and demotes the reverse of
        an asymmetric complement pair (a camera for an SD-card seed). ``"rounds"`` builds
        the list in rounds over the seed type's predicted complementary types (the
        paper's "best candidates per predicted type"), demoting every type predicted not
        complementary; it spreads types more but overrides the ranker's order.
        ``"min_types"`` leaves a list alone unless its top ``k`` spans fewer than
        ``min_types`` types, and then promotes the best-scored candidate of each missing
        type into the places of the lowest-scored repeats (the least change that reaches
        ``min_types`` types).
    demote_reverse : bool
        ``"cap"`` strategy: demote the reverse of an asymmetric complement pair (no camera
        for an SD-card seed). Off by default: in baskets the camera *is* bought with its
        SD card, and on the demo backtest (every basket item a seed) demotion cost 21% of
        Hit@10; with the first-added item as the seed it cost nothing more (see
        docs/type-transition.md). Turn it on for strictly directed complement lists.
    max_per_type : int
        In a diversified list, at most this many items of one type before every other type
        has had its turn.
    min_types : int
        ``"rounds"``: when a seed type has fewer predicted complementary types among the
        candidates than this, the best candidates of other (not demoted) types join the
        first round of the diversified list until it spans ``min_types`` types.
        ``"min_types"``: the number of types the top ``k`` must span (when the candidates
        offer that many).
    min_types_k : int
        ``"min_types"`` in the serving pipeline: the length of the list head that must span
        ``min_types`` types (a widget's slots; a request for fewer items checks its own
        ``k``). Items below it keep the score order.
    device : {"auto", "cpu", "cuda"}
        Training device; ``"auto"`` is CUDA when available.
    seed : int
        Seeds the weight init and the negative sampling.

    Examples
    --------
    >>> TypeTransitionConfig(n_complements=3).n_complements
    3
    >>> TypeTransitionConfig.from_dict({"epochs": 0})
    Traceback (most recent call last):
    ...
    recset.errors.ConfigError: TypeTransitionConfig: 'epochs' must be greater than or equal to 1. Got 0 instead.
    """  # noqa: E501

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: Literal["auto", "product_type", "category"] = "auto"
    exclude: Literal["substitution", "any"] = "substitution"
    embedding_size: int = Field(32, ge=2, le=1024)
    n_complements: int = Field(4, ge=1, le=64)
    hidden_size: int = Field(64, ge=1, le=4096)
    margin: float = Field(0.5, ge=0.0)
    epochs: int = Field(100, ge=1)
    learning_rate: float = Field(0.02, gt=0.0)
    batch_size: int = Field(1024, ge=1)
    negatives: int = Field(16, ge=1)
    min_pair_count: float = Field(1.0, ge=0.0)
    strategy: Literal["cap", "rounds", "min_types"] = "cap"
    demote_reverse: bool = False
    max_per_type: int = Field(3, ge=1)
    min_types: int = Field(3, ge=1)
    min_types_k: int = Field(10, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TypeTransitionConfig:
        """Validate a mapping (e.g. a TOML table); errors become :class:`ConfigError`.

        Raises
        ------
        ConfigError
            Naming every bad key, what was expected and what was received.
        """
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            msgs = [_describe(err, cls) for err in exc.errors()]
            raise ConfigError(f"{cls.__name__}: " + "; ".join(msgs)) from None


def _describe(err: Any, model: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "<root>"
    if err["type"] == "extra_forbidden":
        return f"unknown key {key!r}; allowed keys: {sorted(model.model_fields)}"
    msg = str(err["msg"]).removeprefix("Input should be ").removeprefix("Value error, ")
    return f"{key!r} must be {msg}. Got {err.get('input')!r} instead."
