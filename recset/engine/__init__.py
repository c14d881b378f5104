"""The :class:`Engine`: build / save / load / recommend — the one object a host imports."""

from recset.engine._engine import Engine
from recset.engine._persist import ENGINE_ARTIFACT
from recset.engine._results import Reason, Recommendation

__all__ = ["ENGINE_ARTIFACT", "Engine", "Reason", "Recommendation"]
