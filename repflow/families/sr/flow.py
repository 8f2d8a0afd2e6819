"""The super-resolution family's flow, ``repflow-sr``: prep → train → evaluate → register, a Prefect task each."""
from __future__ import annotations

from repflow.flow import family_flow

sr_flow = family_flow("sr")
