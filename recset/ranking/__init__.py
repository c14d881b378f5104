"""LightGBM ranking of the mixed candidates, and the explore share.

Ranker features are :class:`RankerFeature` objects registered by name with
:func:`register_feature` (third-party packages: the ``recset.ranker_features`` entry-point
group); see :mod:`recset.ranking._feature_base`.
"""

from recset.ranking._candidates import ranking_candidates
from recset.ranking._feature_base import (
    FEATURES,
    FeatureBatch,
    FitContext,
    RankerFeature,
    default_features,
    get_feature,
    register_feature,
    registered_features,
)
from recset.ranking._features import BASE_FEATURES, USER_HISTORY, FeatureSpace, feature_names
from recset.ranking._ranker import (
    RANKER_ARTIFACT,
    Ranker,
    RankerConfig,
    fit_features,
    train_ranker,
)
from recset.ranking._report import write_importance
from recset.ranking._stage import DiscoverStage, ExploreStage, RankerStage

__all__ = [
    "FEATURES",
    "BASE_FEATURES",
    "RANKER_ARTIFACT",
    "USER_HISTORY",
    "DiscoverStage",
    "ExploreStage",
    "FeatureBatch",
    "FeatureSpace",
    "FitContext",
    "Ranker",
    "RankerConfig",
    "RankerFeature",
    "RankerStage",
    "default_features",
    "feature_names",
    "fit_features",
    "get_feature",
    "register_feature",
    "registered_features",
    "ranking_candidates",
    "train_ranker",
    "write_importance",
]
