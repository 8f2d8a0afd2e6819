"""sr.register: each trained scale into the MLflow registry as ``<prefix>-x<scale>`` (``repflow-sr-x2`` ...).

Per scale the alias moves only when the model's Y-PSNR (or SSIM, ``sr.register.criterion``) beats its holder's
under the same protocol (held-out photos, luma, shave, tiling). The registered artifact is pt2 for 48×48 LR
inputs (any batch); the safetensors checkpoint beside it lets ``repflow upscale`` rebuild the module for
images of any size.
"""
from __future__ import annotations

import json
import logging

import mlflow
import numpy as np

from repflow import tracking
from repflow.families.sr.stages.evaluate import load_sr_model
from repflow.manifest import atomic_write_text, read_manifest
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.sr.register")


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
        tags = {"repflow.score": score, "repflow.criterion": cfg.criterion, "repflow.family": "sr",
                "repflow.scale": scale, "repflow.model": config["model"],
                "repflow.params": json.dumps(params.sr.model_dump(mode="json"), sort_keys=True),
                "repflow.git_commit": tracking.git_commit(),
                "repflow.prefect_flow_run_id": tracking.prefect_flow_run_id() or "",
                "repflow.register_run_id": mlflow.active_run().info.run_id,
                "repflow.input.models": lin["inputs"]["models"],
                "repflow.input.evaluation": lin["inputs"]["evaluation"], "repflow.code_version": lin["code_version"],
                "repflow.protocol": json.dumps(scale_protocol, sort_keys=True)}
        tags.update({f"repflow.metric.{k}": v for k, v in metrics.items() if k.endswith(f"/x{scale}")})
        example = np.random.default_rng(0).random((1, 3, 48, 48), dtype=np.float32)
        files = (models_dir / f"x{scale}.safetensors", models_dir / f"x{scale}.json")  # one name per scale: one run
        version = tracking.register_model(model, name, example, tags, files,
                                          identity={"evaluation": lin["inputs"]["evaluation"], "scale": scale})
        holder = tracking.alias_holder(name, cfg.alias)
        moved, reason = tracking.champion_gate(score, scale_protocol, holder)
        if holder is not None and holder.version == version:
            moved, reason = False, f"version {version} already holds it"
        if moved:
            mlflow.MlflowClient().set_registered_model_alias(name, cfg.alias, version)
        log.info("sr.register: %s version %s (%s %.4f): alias %s %s: %s", name, version, cfg.criterion, score,
                 cfg.alias, "moved to it" if moved else "kept", reason)
        results.append({"model": name, "version": version, "score": score, "alias": cfg.alias, "alias_moved": moved,
                        "alias_reason": reason, "uri": f"models:/{name}/{version}"})
        md.append(f"- registered `models:/{name}/{version}` ({cfg.criterion} {score:.4f}); alias `{cfg.alias}` "
                  f"{'moved to it' if moved else 'kept'} ({reason}); try it: "
                  f"`repflow upscale IN.png OUT.png --scale {scale}`")
    atomic_write_text(tmp / "register.json", json.dumps({"criterion": cfg.criterion, "models": results,
                                                         "tracking_uri": mlflow.get_tracking_uri()}, indent=1))
    return StageSummary(metrics={f"version/x{r['model'].rsplit('-x', 1)[1]}": r["version"] for r in results}
                        | {f"alias_moved/x{r['model'].rsplit('-x', 1)[1]}": r["alias_moved"] for r in results},
                        markdown="\n".join(md))
