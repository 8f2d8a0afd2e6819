"""The audio family's flow, ``repflow-audio``: prep → train → evaluate → register, one Prefect task per stage."""
from __future__ import annotations

from repflow.flow import family_flow

audio_flow = family_flow("audio")
