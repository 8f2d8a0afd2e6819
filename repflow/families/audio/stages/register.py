"""audio.register: the encoder (as waveform → embedding) into the MLflow registry as ``repflow-audio-encoder``.

The alias moves only when the mean probe accuracy beats the holder's under the same protocol (tasks, probe
training, test clips): a score from another protocol is no win. The probes, the encoder's safetensors and
their configs are logged beside the model (``checkpoint/``); ``repflow embed-audio`` reads them.
"""
from __future__ import annotations

import json
import logging

import mlflow
import numpy as np

from repflow import tracking
from repflow.families.audio.features import LogMel, MelSettings
from repflow.families.audio.models import AudioEmbedder
from repflow.families.audio.stages.evaluate import load_audio_encoder
from repflow.manifest import atomic_write_text, read_manifest
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.audio.register")


def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    cfg = params.audio.register
    encoder_dir, eval_dir = ctx.inputs["encoder"], ctx.inputs["evaluation"]
    read_manifest(eval_dir, stage="audio.evaluate")
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    if cfg.criterion not in metrics:
        raise KeyError(f"audio.register.criterion = {cfg.criterion!r} is not a metric of {eval_dir / 'metrics.json'};"
                       f" its metrics: {sorted(metrics)}")
    score = float(metrics[cfg.criterion])
    protocol = {"criterion": cfg.criterion, **json.loads((eval_dir / "protocol.json").read_text())}
    encoder, config = load_audio_encoder(encoder_dir)
    settings = MelSettings.from_dict(config["features"])
    model = AudioEmbedder(LogMel(settings), config["norm"]["mean"], config["norm"]["std"], encoder).eval()
    example = np.random.default_rng(0).uniform(-0.1, 0.1, (2, settings.clip_samples)).astype(np.float32)
    tags = {"repflow.score": score, "repflow.criterion": cfg.criterion, "repflow.family": "audio",
            "repflow.params": json.dumps(params.audio.model_dump(mode="json"), sort_keys=True),
            "repflow.git_commit": tracking.git_commit(),
            "repflow.prefect_flow_run_id": tracking.prefect_flow_run_id() or "",
            "repflow.register_run_id": mlflow.active_run().info.run_id,
            "repflow.input.encoder": lin["inputs"]["encoder"], "repflow.input.evaluation": lin["inputs"]["evaluation"],
            "repflow.code_version": lin["code_version"], "repflow.sample_rate": settings.sample_rate,
            "repflow.protocol": json.dumps(protocol, sort_keys=True)}
    tags.update({f"repflow.metric.{k}": v for k, v in tracking.flatten(metrics).items()})
    files = (encoder_dir / "encoder.safetensors", encoder_dir / "encoder.json", eval_dir / "probes.safetensors",
             eval_dir / "probes.json")
    version = tracking.register_model(model, cfg.model_name, example, tags, files,
                                      identity={"evaluation": lin["inputs"]["evaluation"], "criterion": cfg.criterion})
    holder = tracking.alias_holder(cfg.model_name, cfg.alias)
    moved, reason = tracking.champion_gate(score, protocol, holder,
                                           higher_is_better=ctx.stage.registers[0].direction == "max")
    if holder is not None and holder.version == version:
        moved, reason = False, f"version {version} already holds it"
    if moved:
        mlflow.MlflowClient().set_registered_model_alias(cfg.model_name, cfg.alias, version)
    log.info("audio.register: %s version %s (%s %.4f): alias %s %s: %s", cfg.model_name, version, cfg.criterion,
             score, cfg.alias, "moved to it" if moved else "kept", reason)
    result = {"model": cfg.model_name, "version": version, "alias": cfg.alias, "alias_moved": moved,
              "alias_reason": reason, "criterion": cfg.criterion, "score": score,
              "previous_champion_score": None if holder is None else holder.score, "protocol": protocol,
              "uri": f"models:/{cfg.model_name}/{version}", "tracking_uri": mlflow.get_tracking_uri()}
    atomic_write_text(tmp / "register.json", json.dumps(result, indent=1))
    md = (f"- registered `{result['uri']}`; alias `{cfg.alias}` {'moved to it' if moved else 'kept'} ({reason}); "
          f"try it: `repflow embed-audio FILE.wav --model {cfg.model_name}@{cfg.alias}`")
    return StageSummary(metrics={"score": score, "alias_moved": moved, "version": version, "uri": result["uri"],
                                 "model": cfg.model_name, "alias": cfg.alias}, markdown=md)
