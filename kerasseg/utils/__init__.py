"""Internal helpers shared by losses, metrics and models (not public API)."""
