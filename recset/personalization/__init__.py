"""recset.personalization (see ARCHITECTURE.md)."""
