"""The neural stages as the :class:`~recset.Engine` serves them, with their artifacts.

:class:`Personalizer` pairs a trained :class:`~recset.personalization.NeuralModel` with the
user map of the dataset it was trained on, so a host's external user ids reach the model's
dense ids. :func:`train_stages` trains both neural stages the engine can use (personalized
re-ranking and type-transition diversification) from one training dataset.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recset.data import Dataset, IdMap
from recset.errors import ConfigError
from recset.personalization._config import NeuralConfig

if TYPE_CHECKING:
    from recset.personalization._model import NeuralModel

_log = logging.getLogger(__name__)

PERSONALIZER_ARTIFACT = "personalizer"
TYPE_TRANSITION_ARTIFACT = "type_transition"


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
        """Write the model (``model/``) and the user map (``users.json``) to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / "model")
        (directory / "users.json").write_text(
            json.dumps(self.users.values.tolist()), encoding="utf-8"
        )

    @classmethod
    def load(
        cls, directory: Path, *, device: str = "auto", n_items: int | None = None
    ) -> Personalizer:
        """Read a personalizer written by :meth:`save` (torch ``weights_only`` loading).

        Raises
        ------
        ConfigError
            When a file is missing, or the model's catalog size is not ``n_items``.
        """
        from recset.personalization._model import NeuralModel

        directory = Path(directory)
        users_file = directory / "users.json"
        if not users_file.is_file():
            raise ConfigError(f"{users_file}: missing (the personalizer's user map)")
        users = IdMap(json.loads(users_file.read_text(encoding="utf-8")))
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
