"""The staff operations page, ``/ops/``: one page that reloads its data from ``/ops/data/``."""
