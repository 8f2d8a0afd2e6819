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

import numpy as np

from repflow.families.image.train_output import load_encoder
from repflow.manifest import read_manifest
from repflow.registration import Registration
from repflow.stage import StageContext, StageSummary


def run(ctx: StageContext) -> StageSummary:
    reg = Registration(ctx)
    encoder_dir = ctx.inputs["encoder"]
    metrics, score, protocol = reg.evaluation()
    encoder, enc_config = load_encoder(encoder_dir)
    train_lineage = read_manifest(encoder_dir, verify=False).get("lineage", {})
    example = np.random.default_rng(0).random((2, *enc_config["input_shape"]), dtype=np.float32)
    name, alias = reg.section.model_name, reg.section.alias
    return reg.champion(encoder, example, metrics=metrics, score=score, protocol=protocol,
                        files=(encoder_dir / "encoder.safetensors", encoder_dir / "encoder.json"),
                        tags={"repflow.input.shards": train_lineage.get("inputs", {}).get("shards", "")},
                        family_tag=False, show_score=False,
                        try_it=f"load it with `mlflow.pytorch.load_model('models:/{name}@{alias}')`")
