"""newsletter: a self-hosted, per-subscriber daily digest of new research papers."""

__version__ = "0.1.0"
