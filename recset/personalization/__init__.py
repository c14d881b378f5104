"""Neural personalization: GNN product embeddings, transformer user encoder, re-ranking,
type-transition diversification.

``NeuralConfig`` and ``TypeTransitionConfig`` are importable without torch.
:func:`train_neural`, :func:`save_item_embeddings` and :class:`NeuralModel` need the
``neural`` extra (torch, torch_geometric) and import it on first access, so ``import recset``
(and this package) never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recset.personalization._config import NeuralConfig
from recset.personalization._stage import (
    PERSONALIZER_ARTIFACT,
    TYPE_TRANSITION_ARTIFACT,
    Personalizer,
    load_stages,
    train_personalizer,
)
from recset.personalization._type_transition_config import TypeTransitionConfig
from recset.personalization._validate import StageValidation, validate_stage

if TYPE_CHECKING:
    from recset.personalization._model import NeuralModel, save_item_embeddings, train_neural
    from recset.personalization._type_transition import TypeTransition, train_type_transition

__all__ = [
    "PERSONALIZER_ARTIFACT",
    "TYPE_TRANSITION_ARTIFACT",
    "NeuralConfig",
    "NeuralModel",
    "Personalizer",
    "StageValidation",
    "TypeTransition",
    "TypeTransitionConfig",
    "load_stages",
    "save_item_embeddings",
    "train_neural",
    "train_personalizer",
    "train_type_transition",
    "validate_stage",
]


def __getattr__(name: str) -> Any:
    if name in ("NeuralModel", "save_item_embeddings", "train_neural"):
        from recset.personalization._torch import require_torch

        require_torch()
        from recset.personalization import _model

        return getattr(_model, name)
    if name in ("TypeTransition", "train_type_transition"):
        from recset.personalization import _type_transition

        return getattr(_type_transition, name)
    raise AttributeError(f"module 'recset.personalization' has no attribute {name!r}")
