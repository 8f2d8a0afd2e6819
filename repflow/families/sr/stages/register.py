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

from repflow import tracking
from repflow.families.sr.stages.evaluate import load_sr_model
from repflow.manifest import atomic_write_text, read_manifest
from repflow.stage import StageContext, StageSummary


def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    cfg = params.sr.register
    models_dir, eval_dir = ctx.inputs["models"], ctx.inputs["evaluation"]
    read_manifest(eval_dir, stage="sr.evaluate")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    protocol = json.loads((eval_dir / "protocol.json").read_text())
    scales = read_manifest(models_dir, verify=False)["meta"]["scales"]
    results, md = [], []
    for scale in scales:
        name = f"{cfg.model_prefix}-x{scale}"
        score = float(metrics[f"{cfg.criterion}/x{scale}"])
        model, config = load_sr_model(models_dir, scale)
        scale_protocol = {"criterion": cfg.criterion, "scale": scale, **protocol}
        tags = {"repflow.family": "sr", "repflow.scale": scale, "repflow.model": config["model"],
                "repflow.params": json.dumps(params.sr.model_dump(mode="json"), sort_keys=True),
                "repflow.input.models": lin["inputs"]["models"],
                "repflow.input.evaluation": lin["inputs"]["evaluation"]}
        tags.update({f"repflow.metric.{k}": v for k, v in metrics.items() if k.endswith(f"/x{scale}")})
        example = np.random.default_rng(0).random((1, 3, 48, 48), dtype=np.float32)
        result = tracking.register_champion(
            model, name, example, score=score, criterion=cfg.criterion, protocol=scale_protocol, alias=cfg.alias,
            files=(models_dir / f"x{scale}.safetensors", models_dir / f"x{scale}.json"),  # one name per scale: one run
            identity={"evaluation": lin["inputs"]["evaluation"], "scale": scale}, code_version=lin["code_version"],
            tags=tags)
        results.append(result)
        moved, reason, version = result["alias_moved"], result["alias_reason"], result["version"]
        md.append(f"- registered `models:/{name}/{version}` ({cfg.criterion} {score:.4f}); alias `{cfg.alias}` "
                  f"{'moved to it' if moved else 'kept'} ({reason}); try it: "
                  f"`repflow upscale IN.png OUT.png --scale {scale}`")
    atomic_write_text(tmp / "register.json", json.dumps({"criterion": cfg.criterion, "models": results,
                                                         "tracking_uri": mlflow.get_tracking_uri()}, indent=1))
    return StageSummary(metrics={f"version/x{r['model'].rsplit('-x', 1)[1]}": r["version"] for r in results}
                        | {f"alias_moved/x{r['model'].rsplit('-x', 1)[1]}": r["alias_moved"] for r in results},
                        markdown="\n".join(md))
