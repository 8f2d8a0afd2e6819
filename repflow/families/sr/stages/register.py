"""sr.register: each trained scale into the MLflow registry as ``<prefix>-x<scale>`` (``repflow-sr-x2`` ...).

Per scale the alias moves only when the model's Y-PSNR (or SSIM, ``sr.register.criterion``) beats its holder's
under the same protocol (held-out photos, luma, shave, tiling). The registered artifact is pt2 for 48×48 LR
inputs (any batch); the safetensors checkpoint beside it lets ``repflow upscale`` rebuild the module for
images of any size.
"""
from __future__ import annotations

import json

import mlflow
import numpy as np

from repflow.families.sr.stages.evaluate import load_sr_model
from repflow.manifest import atomic_write_text, read_manifest
from repflow.registration import Registration
from repflow.stage import StageContext, StageSummary


def run(ctx: StageContext) -> StageSummary:
    reg = Registration(ctx)
    cfg = reg.section
    models_dir, eval_dir = ctx.inputs["models"], ctx.inputs["evaluation"]
    read_manifest(eval_dir, stage="sr.evaluate")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    protocol = json.loads((eval_dir / "protocol.json").read_text())
    scales = read_manifest(models_dir, verify=False)["meta"]["scales"]
    results, md = [], []
    for scale in scales:
        model, config = load_sr_model(models_dir, scale)
        tags = {**reg.tags({k: v for k, v in metrics.items() if k.endswith(f"/x{scale}")}), "repflow.scale": scale,
                "repflow.model": config["model"]}
        example = np.random.default_rng(0).random((1, 3, 48, 48), dtype=np.float32)
        result = reg.register(
            model, example, name=f"{cfg.model_prefix}-x{scale}", score=float(metrics[f"{cfg.criterion}/x{scale}"]),
            protocol={"criterion": cfg.criterion, "scale": scale, **protocol}, tags=tags,
            files=(models_dir / f"x{scale}.safetensors", models_dir / f"x{scale}.json"),  # one name per scale: one run
            identity={"evaluation": ctx.lineage["inputs"]["evaluation"], "scale": scale})
        results.append(result)
        md.append(reg.line(result, f"try it: `repflow upscale IN.png OUT.png --scale {scale}`"))
    atomic_write_text(ctx.tmp / "register.json", json.dumps({"criterion": cfg.criterion, "models": results,
                                                             "tracking_uri": mlflow.get_tracking_uri()}, indent=1))
    return StageSummary(metrics={f"version/x{r['model'].rsplit('-x', 1)[1]}": r["version"] for r in results}
                        | {f"alias_moved/x{r['model'].rsplit('-x', 1)[1]}": r["alias_moved"] for r in results},
                        markdown="\n".join(md))
