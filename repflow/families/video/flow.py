"""The video watermarking family's flow, ``repflow-video``: prep → train → evaluate → register, a Prefect task
each."""
from __future__ import annotations

from repflow.flow import family_flow

video_flow = family_flow("video")
