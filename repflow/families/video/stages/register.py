"""video.register: the watermarker into the MLflow registry as ``repflow-video-watermarker``.

The alias moves only when its score (``video.register.criterion``, by default the bit accuracy averaged over
every distortion and H.264 level) beats the holder's under the same protocol. The logged pt2 model is the
extractor (clip (N, 3, T, S, S) → message logits (N, L)), what a detector serves; the safetensors checkpoint
beside it rebuilds the whole watermarker, which ``repflow watermark embed / extract`` use.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from repflow import tracking
from repflow.families.video.stages.train import load_watermarker
from repflow.manifest import atomic_write_text
from repflow.stage import StageContext, StageSummary


class Extractor(torch.nn.Module):
    """A watermarker's ``extract`` as a module's forward, for export."""

    def __init__(self, watermarker):
        super().__init__()
        self.watermarker = watermarker

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.watermarker.extract(clip)


def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    cfg = params.video.register
    models_dir, eval_dir = ctx.inputs["models"], ctx.inputs["evaluation"]
    metrics, score, protocol = tracking.read_evaluation(eval_dir, "video.evaluate", cfg.criterion)
    model, config = load_watermarker(models_dir)
    example = np.random.default_rng(0).random((1, 3, config["frames"], config["size"], config["size"]),
                                              dtype=np.float32)
    tags = {"repflow.family": "video", "repflow.model": config["model"], "repflow.bits": config["bits"],
            "repflow.frames": config["frames"], "repflow.size": config["size"],
            "repflow.params": json.dumps(params.video.model_dump(mode="json"), sort_keys=True),
            "repflow.input.models": lin["inputs"]["models"], "repflow.input.evaluation": lin["inputs"]["evaluation"]}
    tags.update({f"repflow.metric.{k}": v for k, v in metrics.items()})
    result = tracking.register_champion(
        Extractor(model).eval(), cfg.model_name, example, score=score, criterion=cfg.criterion, protocol=protocol,
        alias=cfg.alias, files=(models_dir / "watermarker.safetensors", models_dir / "watermarker.json"),
        identity={"evaluation": lin["inputs"]["evaluation"], "criterion": cfg.criterion},
        code_version=lin["code_version"], tags=tags, higher_is_better=ctx.stage.registers[0].direction == "max")
    atomic_write_text(tmp / "register.json", json.dumps(result, indent=1))
    md = (f"- registered `{result['uri']}` ({cfg.criterion} {score:.4f}); alias `{cfg.alias}` "
          f"{'moved to it' if result['alias_moved'] else 'kept'} ({result['alias_reason']}); try it: "
          f"`repflow watermark embed IN.mp4 OUT.mp4 --message c0ffee42` then `repflow watermark extract OUT.mp4`")
    return StageSummary(metrics={"score": score, "alias_moved": result["alias_moved"], "version": result["version"],
                                 "uri": result["uri"], "model": cfg.model_name, "alias": cfg.alias}, markdown=md)
