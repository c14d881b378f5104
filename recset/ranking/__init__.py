"""LightGBM ranking of the mixed candidates."""

from recset.ranking._features import BASE_FEATURES, FeatureSpace, feature_names
from recset.ranking._ranker import (
    RANKER_ARTIFACT,
    Ranker,
    RankerConfig,
    fit_features,
    train_ranker,
)

__all__ = [
    "BASE_FEATURES",
    "RANKER_ARTIFACT",
    "FeatureSpace",
    "Ranker",
    "RankerConfig",
    "feature_names",
    "fit_features",
    "train_ranker",
]
