"""Neural personalization: GNN product embeddings, transformer user encoder, re-ranking.

``NeuralConfig`` is importable without torch. :func:`train_neural` and
:class:`NeuralModel` need the ``neural`` extra (torch, torch_geometric) and import it on
first access, so ``import recset`` (and this package) never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from recset.personalization._config import NeuralConfig

if TYPE_CHECKING:
    from recset.personalization._model import NeuralModel, train_neural

__all__ = ["NeuralConfig", "NeuralModel", "train_neural"]


def __getattr__(name: str) -> Any:
    if name in ("NeuralModel", "train_neural"):
        from recset.personalization._torch import require_torch

        require_torch()
        from recset.personalization import _model

        return getattr(_model, name)
    raise AttributeError(f"module 'recset.personalization' has no attribute {name!r}")
