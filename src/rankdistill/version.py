"""The package version, in the lowest layer: stage manifests hash it, and pyproject reads it from here."""

__version__ = "0.1.0"
