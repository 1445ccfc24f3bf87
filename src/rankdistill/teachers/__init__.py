"""teachers layer."""
