"""The text family's flow, ``repflow-text``: prep → train → evaluate → register, a Prefect task each."""
from __future__ import annotations

from repflow.flow import family_flow

text_flow = family_flow("text")
