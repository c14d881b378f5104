"""The :class:`Engine`: build / save / load / recommend — the one object a host imports."""

from recset.engine._engine import Engine
from recset.engine._persist import ENGINE_ARTIFACT, AppendReport, append_engine
from recset.engine._results import Reason, Recommendation

__all__ = [
    "ENGINE_ARTIFACT",
    "AppendReport",
    "Engine",
    "Reason",
    "Recommendation",
    "append_engine",
]
