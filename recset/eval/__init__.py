"""recset.eval (see ARCHITECTURE.md)."""
