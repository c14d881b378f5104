"""recset.signals (see ARCHITECTURE.md)."""
