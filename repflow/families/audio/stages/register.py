"""audio.register: the encoder (as waveform → embedding) into the MLflow registry as ``repflow-audio-encoder``.

The alias moves only when the mean probe accuracy beats the holder's under the same protocol (tasks, probe
training, test clips): a score from another protocol is no win. The probes, the encoder's safetensors and
their configs are logged beside the model (``checkpoint/``); ``repflow embed-audio`` reads them.
"""
from __future__ import annotations

import json

import numpy as np

from repflow import tracking
from repflow.families.audio.features import LogMel, MelSettings
from repflow.families.audio.models import AudioEmbedder
from repflow.families.audio.stages.evaluate import load_audio_encoder
from repflow.manifest import atomic_write_text
from repflow.stage import StageContext, StageSummary

def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    cfg = params.audio.register
    encoder_dir, eval_dir = ctx.inputs["encoder"], ctx.inputs["evaluation"]
    metrics, score, protocol = tracking.read_evaluation(eval_dir, "audio.evaluate", cfg.criterion)
    encoder, config = load_audio_encoder(encoder_dir)
    settings = MelSettings.from_dict(config["features"])
    model = AudioEmbedder(LogMel(settings), config["norm"]["mean"], config["norm"]["std"], encoder).eval()
    example = np.random.default_rng(0).uniform(-0.1, 0.1, (2, settings.clip_samples)).astype(np.float32)
    tags = {"repflow.family": "audio", "repflow.params": json.dumps(params.audio.model_dump(mode="json"),
                                                                    sort_keys=True),
            "repflow.input.encoder": lin["inputs"]["encoder"], "repflow.input.evaluation": lin["inputs"]["evaluation"],
            "repflow.sample_rate": settings.sample_rate}
    tags.update({f"repflow.metric.{k}": v for k, v in tracking.flatten(metrics).items()})
    files = (encoder_dir / "encoder.safetensors", encoder_dir / "encoder.json", eval_dir / "probes.safetensors",
             eval_dir / "probes.json")
    result = tracking.register_champion(
        model, cfg.model_name, example, score=score, criterion=cfg.criterion, protocol=protocol, alias=cfg.alias,
        files=files, identity={"evaluation": lin["inputs"]["evaluation"], "criterion": cfg.criterion},
        code_version=lin["code_version"], tags=tags, higher_is_better=ctx.stage.registers[0].direction == "max")
    moved, reason, version = result["alias_moved"], result["alias_reason"], result["version"]
    atomic_write_text(tmp / "register.json", json.dumps(result, indent=1))
    md = (f"- registered `{result['uri']}`; alias `{cfg.alias}` {'moved to it' if moved else 'kept'} ({reason}); "
          f"try it: `repflow embed-audio FILE.wav --model {cfg.model_name}@{cfg.alias}`")
    return StageSummary(metrics={"score": score, "alias_moved": moved, "version": version, "uri": result["uri"],
                                 "model": cfg.model_name, "alias": cfg.alias}, markdown=md)
