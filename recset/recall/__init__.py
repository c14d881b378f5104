"""Recall sets: pluggable candidate sources registered by name, the mix and its first stage."""

from recset.pipeline import Candidates
from recset.recall import bought_after as _bought_after  # noqa: F401
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
    RECALL_SETS,
    RecallBase,
    SourceConfig,
    compact,
    get_recall,
    register_recall,
    registered_recall_sets,
)
from recset.recall._checks import (
    category_names,
    check_category_keys,
    key_matches,
    mix_item_counts,
)
from recset.recall._config import (
    BuildConfig,
    MixConfig,
    MixOverride,
    RecallConfig,
    source_config_union,
    validate_source_config,
)
from recset.recall._cooccurrence import PairRecall, pair_topk
from recset.recall._incremental import AppendResult, CountState, PairCounter, append_counts
from recset.recall._lists import ListsWriter, PrecomputedLists
from recset.recall._text import TextEmbeddingConfig, embed_items
from recset.recall.mixer import Mixer, MixStage
from recset.recall.popular import PopularConfig, PopularRecall

__all__ = [
    "pair_topk",
    "AppendResult",
    "CountState",
    "PairCounter",
    "append_counts",
    "RECALL_SETS",
    "BuildConfig",
    "Candidates",
    "MixConfig",
    "MixOverride",
    "MixStage",
    "Mixer",
    "PairRecall",
    "PopularConfig",
    "PopularRecall",
    "ListsWriter",
    "PrecomputedLists",
    "RecallBase",
    "RecallConfig",
    "SourceConfig",
    "category_names",
    "check_category_keys",
    "TextEmbeddingConfig",
    "compact",
    "embed_items",
    "get_recall",
    "key_matches",
    "mix_item_counts",
    "register_recall",
    "registered_recall_sets",
    "source_config_union",
    "validate_source_config",
]
