"""What every family's data sources share: the error a bad source raises.

Each family reads its own sources (``repflow.families.<name>.sources`` or similar); this module holds only
what two or more of them use, so a family never imports another family's reader to raise the same error.
"""
from __future__ import annotations

__all__ = ["SourceError"]


class SourceError(ValueError):
    """A source that is missing, empty or not in the format its type promises; the message names the file
    or key and what is allowed (the CLI prints it as one line and exits 2)."""
