"""The CTR family's flow, ``repflow-ctr``: prep → train → evaluate → register, a Prefect task each."""
from __future__ import annotations

from repflow.flow import family_flow

ctr_flow = family_flow("ctr")
