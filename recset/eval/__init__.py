"""recset.eval (see ARCHITECTURE.md)."""

from recset.eval._gate import GATE_METRIC, HIT1_TOLERANCE, GateResult, compare_on_validation
from recset.eval._tuning import Tuned, tune_baselines, validation_split

__all__ = [
    "GATE_METRIC",
    "HIT1_TOLERANCE",
    "GateResult",
    "Tuned",
    "compare_on_validation",
    "tune_baselines",
    "validation_split",
]
