"""The model registry: stored model files and their records, uploads, the demo model."""
