"""recset.eval (see ARCHITECTURE.md)."""

from recset.eval._tuning import Tuned, tune_baselines, validation_split

__all__ = ["Tuned", "tune_baselines", "validation_split"]
