"""recset.eval (see ARCHITECTURE.md)."""

from recset.eval._gate import GATE_METRIC, GateResult, compare_on_validation
from recset.eval._tuning import Tuned, tune_baselines, validation_split

__all__ = [
    "GATE_METRIC",
    "GateResult",
    "Tuned",
    "compare_on_validation",
    "tune_baselines",
    "validation_split",
]
