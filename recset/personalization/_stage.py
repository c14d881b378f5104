"""The neural stages as the :class:`~recset.Engine` serves them, with their artifacts.

:class:`Personalizer` pairs a trained :class:`~recset.personalization.NeuralModel` with the
user map of the dataset it was trained on, so a host's external user ids reach the model's
dense ids. :func:`train_stages` trains both neural stages the engine can use (personalized
re-ranking and type-transition diversification) from one training dataset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from recset.data import Dataset, IdMap
from recset.errors import ConfigError, StorageError
from recset.personalization._config import NeuralConfig
from recset.pipeline import Candidates, Request, Stage, register_stage
from recset.storage import read_state, write_state

if TYPE_CHECKING:
    from recset.personalization._model import NeuralModel
    from recset.personalization._type_transition import TypeTransition

_log = logging.getLogger(__name__)

PERSONALIZER_ARTIFACT = "personalizer"
PERSONALIZER_KIND = "personalizer"
PERSONALIZER_FORMAT = 1
"""Format version of the personalizer's own state (``personalizer.json``, the user map)."""
_RETRAIN = "retrain the neural stages with `recset train-neural`"
TYPE_TRANSITION_ARTIFACT = "type_transition"
ITEM_EMBEDDINGS_FILE = "item_embeddings.npz"
"""File of a saved personalizer holding the GNN item embeddings (``gnn_neighbors`` reads it)."""


@dataclass
class Personalizer:
    """A trained neural model and the user map of its training dataset.

    Attributes
    ----------
    model : NeuralModel
    users : IdMap
        External user ids of the training dataset, in the model's dense order.
    """

    model: NeuralModel

    users: IdMap

    @property
    def config(self) -> NeuralConfig:
        return self.model.config

    def save(self, directory: Path) -> None:
        """Write the personalizer to ``directory``.

        Files: ``model/`` (:meth:`NeuralModel.save`), the GNN item embeddings
        (:data:`ITEM_EMBEDDINGS_FILE`, for ``gnn_neighbors``) and the ``"personalizer"`` state
        of :func:`~recset.storage.write_state` (``personalizer.json``: the user map).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / "model")
        # the GNN item embeddings, the artifact the gnn_neighbors recall source reads
        from recset.personalization._model import save_item_embeddings

        save_item_embeddings(self.model, directory / ITEM_EMBEDDINGS_FILE)
        write_state(
            directory,
            PERSONALIZER_KIND,
            PERSONALIZER_FORMAT,
            meta={"users": self.users.values.tolist()},
        )

    @classmethod
    def load(
        cls, directory: Path, *, device: str = "auto", n_items: int | None = None
    ) -> Personalizer:
        """Read a personalizer written by :meth:`save` (torch ``weights_only`` loading).

        Raises
        ------
        ConfigError
            When a file is missing, the directory was written by another recset version
            (the message says to retrain), or the model's catalog size is not ``n_items``.
        """
        from recset.personalization._model import NeuralModel

        directory = Path(directory)
        users_file = directory / f"{PERSONALIZER_KIND}.json"
        try:
            state = read_state(directory, PERSONALIZER_KIND, PERSONALIZER_FORMAT)
        except StorageError as exc:
            raise ConfigError(f"{exc}; {_RETRAIN}") from None
        raw = state.meta.get("users")
        if not isinstance(raw, list):
            raise ConfigError(f"{users_file}: no user map (the personalizer's users); {_RETRAIN}")
        users = IdMap(raw)
        model = NeuralModel.load(directory / "model", device=device, n_items=n_items)
        n_hist = len(model.history_indptr_) - 1
        if n_hist != len(users):
            raise ConfigError(
                f"{users_file}: {len(users)} users, the model keeps histories of {n_hist}"
            )
        return cls(model, users)


def train_personalizer(
    train: Dataset, config: NeuralConfig | None = None, *, show_progress: bool = False
) -> Personalizer:
    """Train the neural model on ``train`` (see :func:`~recset.personalization.train_neural`)."""
    from recset.personalization._model import train_neural

    model = train_neural(train, config, show_progress=show_progress)
    return Personalizer(model, train.users)


@register_stage("personalization")
class PersonalizeStage(Stage):
    """Re-ranks the head of each row for the user with the :class:`Personalizer`
    (a blend of the incoming order and the personalized distance; see ``NeuralModel.rerank``).
    """

    def __init__(self, personalizer: Personalizer) -> None:
        self.personalizer = personalizer

    @classmethod
    def create(cls, parts: Mapping[str, Any]) -> PersonalizeStage | None:
        p = parts.get("personalizer")
        return None if p is None else cls(p)

    def width(self, k: int) -> int:
        return max(k, self.personalizer.config.rerank_n)

    def run(self, request: Request, candidates: Candidates) -> Candidates:
        base = np.where(candidates.item >= 0, candidates.score, -np.inf).astype(np.float64)
        score = self.personalizer.model.rerank(request.seeds, request.users, candidates.item, base)
        order = np.argsort(-score, axis=1, kind="stable")
        return candidates.take(order, score).falling()

    def __repr__(self) -> str:
        return f"PersonalizeStage(rerank_n={self.personalizer.config.rerank_n})"


@register_stage("type_transition")
class TypeTransitionStage(Stage):
    """Reorders each row by complementary product type (the :class:`TypeTransition` step)."""

    def __init__(self, diversifier: TypeTransition) -> None:
        self.diversifier = diversifier

    @classmethod
    def create(cls, parts: Mapping[str, Any]) -> TypeTransitionStage | None:
        d = parts.get("type_transition")
        return None if d is None else cls(d)

    def width(self, k: int) -> int:
        return 2 * k

    def run(self, request: Request, candidates: Candidates) -> Candidates:
        n = candidates.width
        order = np.broadcast_to(np.arange(n), candidates.item.shape)
        score = np.where(candidates.item >= 0, candidates.score, -np.inf)
        # "min_types" checks the top min_types_k of the list (the others reorder the whole row)
        cfg = self.diversifier.config
        k = min(request.k, cfg.min_types_k, n) if cfg.strategy == "min_types" else n
        order = _diversified(self.diversifier, request.seeds, candidates.item, score, order, k)
        return candidates.take(order).falling()

    def __repr__(self) -> str:
        return "TypeTransitionStage()"


def _diversified(
    diversifier: TypeTransition,
    seeds: NDArray[np.int32],
    items: NDArray[np.int32],
    score: NDArray[np.floating],
    order: NDArray[np.intp],
    k: int | None = None,
) -> NDArray[np.intp]:
    """``order`` (B, N) rearranged by the type-transition step for a list of ``k`` (default:
    the whole row); the columns it leaves out follow in their order."""
    sorted_items = np.take_along_axis(items, order, 1)
    sorted_score = np.take_along_axis(score, order, 1)
    n = order.shape[1]
    cols = diversifier.diversify(seeds, sorted_items, sorted_score, n if k is None else k)
    if cols.shape[1] < n:
        pad = np.full((len(cols), n - cols.shape[1]), -1, dtype=cols.dtype)
        cols = np.concatenate([cols, pad], axis=1)
    ok = cols >= 0
    cols = np.take_along_axis(cols, np.argsort(~ok, axis=1, kind="stable"), 1)  # real first
    n_ok = ok.sum(axis=1, keepdims=True)
    # complete each row to a permutation with the columns it left out (padding), in order
    used = np.zeros(order.shape, dtype=bool)
    r, c = np.nonzero(cols >= 0)
    used[r, cols[r, c]] = True
    rest = np.argsort(used, axis=1, kind="stable")
    pos = np.arange(n)[None, :]
    tail = np.take_along_axis(rest, np.clip(pos - n_ok, 0, n - 1), 1)
    full = np.where(pos < n_ok, cols, tail)
    return np.take_along_axis(order, full, 1)


def load_stages(
    paths: Mapping[str, Path], device: str, n_items: int
) -> tuple[Personalizer | None, TypeTransition | None]:
    """The neural stages saved at ``paths`` (keys ``"personalizer"``, ``"type_transition"``).

    Without torch installed they are left out, with a warning: the engine then serves the
    ranker's order.
    """
    import importlib.util

    if not paths:
        return None, None
    if importlib.util.find_spec("torch") is None:
        _log.warning(
            "the store holds neural stages %s but torch is not installed "
            "(pip install 'recset[neural]'): serving without them",
            sorted(paths),
        )
        return None, None
    from recset.personalization._type_transition import TypeTransition

    personalizer = (
        Personalizer.load(paths["personalizer"], device=device, n_items=n_items)
        if "personalizer" in paths
        else None
    )
    transition = (
        TypeTransition.load(paths["type_transition"], device=device)
        if "type_transition" in paths
        else None
    )
    return personalizer, transition
