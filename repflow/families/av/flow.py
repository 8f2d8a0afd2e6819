"""The audio-visual family's flow, ``repflow-av``: prep → vqvae → train → evaluate → register, a Prefect task
each."""
from __future__ import annotations

from repflow.flow import family_flow

av_flow = family_flow("av")
