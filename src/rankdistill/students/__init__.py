"""students layer."""
