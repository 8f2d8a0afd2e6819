"""video.register: the watermarker into the MLflow registry as ``repflow-video-watermarker``.

The alias moves only when its score (``video.register.criterion``, by default the bit accuracy averaged over
every distortion and H.264 level) beats the holder's under the same protocol. The logged pt2 model is the
extractor (clip (N, 3, T, S, S) → message logits (N, L)), what a detector serves; the safetensors checkpoint
beside it rebuilds the whole watermarker, which ``repflow watermark embed / extract`` use.
"""
from __future__ import annotations

import numpy as np
import torch

from repflow.families.video.stages.train import load_watermarker
from repflow.registration import Registration
from repflow.stage import StageContext, StageSummary


class Extractor(torch.nn.Module):
    """A watermarker's ``extract`` as a module's forward, for export."""

    def __init__(self, watermarker):
        super().__init__()
        self.watermarker = watermarker

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.watermarker.extract(clip)


def run(ctx: StageContext) -> StageSummary:
    reg = Registration(ctx)
    models_dir = ctx.inputs["models"]
    metrics, score, protocol = reg.evaluation()
    model, config = load_watermarker(models_dir)
    example = np.random.default_rng(0).random((1, 3, config["frames"], config["size"], config["size"]),
                                              dtype=np.float32)
    tags = {"repflow.model": config["model"], "repflow.bits": config["bits"], "repflow.frames": config["frames"],
            "repflow.size": config["size"]}
    return reg.champion(Extractor(model).eval(), example, metrics=metrics, score=score, protocol=protocol,
                        files=(models_dir / "watermarker.safetensors", models_dir / "watermarker.json"), tags=tags,
                        try_it="try it: `repflow watermark embed IN.mp4 OUT.mp4 --message c0ffee42` then "
                               "`repflow watermark extract OUT.mp4`")
