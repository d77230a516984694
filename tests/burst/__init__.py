"""A private real SLURM with CLOUD nodes (a package, so that its conftest does not shadow tests/conftest.py)."""
