"""recset: complementary-product recommendation (frequently bought together).

``import recset`` stays light: it never imports torch, lightgbm or an ANN library.
"""

from recset.engine import Engine, Reason, Recommendation
from recset.errors import (
    ConfigError,
    DataError,
    DataWarning,
    NotFittedError,
    ParameterTypeError,
    ParameterWarning,
    RecsetError,
    StorageError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DataWarning",
    "Engine",
    "NotFittedError",
    "ParameterTypeError",
    "ParameterWarning",
    "Reason",
    "Recommendation",
    "RecsetError",
    "StorageError",
    "__version__",
]
