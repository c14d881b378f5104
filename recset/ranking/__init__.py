"""LightGBM ranking of the mixed candidates, and the explore share."""

from recset.ranking._features import BASE_FEATURES, USER_HISTORY, FeatureSpace, feature_names
from recset.ranking._ranker import (
    RANKER_ARTIFACT,
    Ranker,
    RankerConfig,
    fit_features,
    train_ranker,
)
from recset.ranking._stage import ExploreStage, RankerStage, ranking_candidates

__all__ = [
    "BASE_FEATURES",
    "RANKER_ARTIFACT",
    "USER_HISTORY",
    "ExploreStage",
    "FeatureSpace",
    "Ranker",
    "RankerConfig",
    "RankerStage",
    "feature_names",
    "fit_features",
    "ranking_candidates",
    "train_ranker",
]
