"""Datasets: the canonical format, validation, id maps, loaders and the synthetic generator."""

from recset.data._aspects import (
    MAX_ASPECT_TOKENS,
    aspect_tokens,
    aspect_values,
    decode_aspects,
)
from recset.data._dataset import (
    ADD_TO_CART,
    PURCHASE,
    VIEW,
    Catalog,
    Dataset,
    Events,
    Groups,
    catalog_frame,
    load_dataset,
)
from recset.data._format import (
    CATALOG_COLUMNS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    LoadReport,
    RowError,
    read_events,
    read_validated,
    write_dataset,
)
from recset.data._ids import IdMap
from recset.data._promotions import (
    Promotions,
    PromotionSteps,
    promotion_at,
    promotion_steps,
    read_promotions,
    write_promotions,
)
from recset.data._splits import (
    Queries,
    Split,
    Targets,
    basket_queries,
    leave_last_split,
    time_split,
)

__all__ = [
    "ADD_TO_CART",
    "CATALOG_COLUMNS",
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "PURCHASE",
    "VIEW",
    "Catalog",
    "Dataset",
    "Events",
    "Groups",
    "MAX_ASPECT_TOKENS",
    "IdMap",
    "LoadReport",
    "PromotionSteps",
    "Promotions",
    "Queries",
    "RowError",
    "Split",
    "Targets",
    "aspect_tokens",
    "aspect_values",
    "basket_queries",
    "catalog_frame",
    "decode_aspects",
    "leave_last_split",
    "load_dataset",
    "promotion_at",
    "promotion_steps",
    "read_promotions",
    "read_events",
    "read_validated",
    "time_split",
    "write_dataset",
    "write_promotions",
]
