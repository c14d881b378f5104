"""recset.ranking (see ARCHITECTURE.md)."""
