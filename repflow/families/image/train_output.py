"""Reading the ``image.train`` stage's output: the encoder the evaluate, transfer, register and compare stages
(and the benchmarks) start from."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from repflow.checkpoints import CheckpointError, load_state_strict, load_tensors
from repflow.families.image.models import build_encoder
from repflow.manifest import read_manifest

__all__ = ["load_encoder"]


def load_encoder(folder: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder of a verified ``train`` output folder, in eval mode, with its builder config."""
    folder = Path(folder)
    read_manifest(folder, stage="image.train")
    state, config = load_tensors(folder / "encoder.safetensors")
    try:
        encoder = build_encoder(config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder / 'encoder.json'}: cannot build an encoder from it ({exc})") from None
    load_state_strict(encoder, state, folder / "encoder.safetensors")
    return encoder.eval(), config
