"""Recall sets: pluggable candidate sources, registered by name."""

from recset.recall import popular as _popular  # noqa: F401  (registers the built-in sources)
from recset.recall._base import (
    Candidates,
    RecallBase,
    RecallSet,
    SourceConfig,
    compact,
    get_recall,
    register_recall,
    registered_recall_sets,
)
from recset.recall.popular import PopularConfig, PopularRecall

__all__ = [
    "Candidates",
    "PopularConfig",
    "PopularRecall",
    "RecallBase",
    "RecallSet",
    "SourceConfig",
    "compact",
    "get_recall",
    "register_recall",
    "registered_recall_sets",
]
