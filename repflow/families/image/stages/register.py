"""image.register: put the encoder into the MLflow registry; move the alias only when it beats the holder
under the same measurement protocol (``protocol.json`` of the evaluate stage: criterion, probe, attack,
steps, ε grid, attacked test images). A version scored under another protocol is registered, but the
alias stays and the log says why.

The registered artifact is the ``pt2`` (torch.export) format: loading it runs no pickled code and
needs neither this package nor its classes, only torch and mlflow; its dynamic batch dimension
embeds any batch. The safetensors checkpoint and its config are logged beside it (``checkpoint/``)
for users who need the ``nn.Module`` class back.
"""
from __future__ import annotations

import json

import numpy as np

from repflow import tracking
from repflow.families.image.train_output import load_encoder
from repflow.manifest import atomic_write_text, read_manifest
from repflow.stage import StageContext, StageSummary

def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    encoder_dir, eval_dir = ctx.inputs["encoder"], ctx.inputs["evaluation"]
    cfg = params.register
    metrics, score, protocol = tracking.read_evaluation(eval_dir, "image.evaluate", cfg.criterion)
    encoder, enc_config = load_encoder(encoder_dir)
    train_lineage = read_manifest(encoder_dir, verify=False).get("lineage", {})
    example = np.random.default_rng(0).random((2, *enc_config["input_shape"]), dtype=np.float32)
    tags = {"repflow.params": json.dumps(params.model_dump(mode="json"), sort_keys=True),
            "repflow.input.encoder": lin["inputs"]["encoder"], "repflow.input.evaluation": lin["inputs"]["evaluation"],
            "repflow.input.shards": train_lineage.get("inputs", {}).get("shards", "")}
    tags.update({f"repflow.metric.{k}": v for k, v in tracking.flatten(metrics).items()})
    result = tracking.register_champion(
        encoder, cfg.model_name, example, score=score, criterion=cfg.criterion, protocol=protocol, alias=cfg.alias,
        files=(encoder_dir / "encoder.safetensors", encoder_dir / "encoder.json"),
        identity={"evaluation": lin["inputs"]["evaluation"], "criterion": cfg.criterion},
        code_version=lin["code_version"], tags=tags,
        higher_is_better=ctx.stage.registers[0].direction == "max")  # the declaration's gate
    moved, reason, version = result["alias_moved"], result["alias_reason"], result["version"]
    atomic_write_text(tmp / "register.json", json.dumps(result, indent=1))
    md = (f"- registered `{result['uri']}`; alias `{cfg.alias}` "
          + ("moved to it" if moved else "kept") + f" ({reason})"
          + f"; load it with `mlflow.pytorch.load_model('models:/{cfg.model_name}@{cfg.alias}')`")
    return StageSummary(metrics={"score": score, "alias_moved": moved, "version": version, "uri": result["uri"],
                                 "model": cfg.model_name, "alias": cfg.alias}, markdown=md)
