"""Recall sets: pluggable candidate sources, registered by name."""

from recset.recall import co_purchase as _co_purchase  # noqa: F401
from recset.recall import co_purchase_only as _co_purchase_only  # noqa: F401
from recset.recall import co_view as _co_view  # noqa: F401
from recset.recall import compatibility as _compatibility  # noqa: F401
from recset.recall import complementary_of_similar as _complementary_of_similar  # noqa: F401
from recset.recall import gnn_neighbors as _gnn_neighbors  # noqa: F401
from recset.recall import popular as _popular  # noqa: F401  (registers the built-in sources)
from recset.recall import related_categories as _related_categories  # noqa: F401
from recset.recall import substitutes as _substitutes  # noqa: F401
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
