"""audio.register: the encoder (as waveform → embedding) into the MLflow registry as ``repflow-audio-encoder``.

The alias moves only when the mean probe accuracy beats the holder's under the same protocol (tasks, probe
training, test clips): a score from another protocol is no win. The probes, the encoder's safetensors and
their configs are logged beside the model (``checkpoint/``); ``repflow embed-audio`` reads them.
"""
from __future__ import annotations

import numpy as np

from repflow.families.audio.features import MelSettings
from repflow.families.audio.stages.evaluate import load_audio_embedder
from repflow.registration import Registration
from repflow.stage import StageContext, StageSummary


def run(ctx: StageContext) -> StageSummary:
    reg = Registration(ctx)
    encoder_dir, eval_dir = ctx.inputs["encoder"], ctx.inputs["evaluation"]
    metrics, score, protocol = reg.evaluation()
    model, config = load_audio_embedder(encoder_dir)
    settings = MelSettings.from_dict(config["features"])
    example = np.random.default_rng(0).uniform(-0.1, 0.1, (2, settings.clip_samples)).astype(np.float32)
    files = (encoder_dir / "encoder.safetensors", encoder_dir / "encoder.json", eval_dir / "probes.safetensors",
             eval_dir / "probes.json")
    return reg.champion(model, example, metrics=metrics, score=score, protocol=protocol, files=files,
                        tags={"repflow.sample_rate": settings.sample_rate}, show_score=False,
                        try_it=f"try it: `repflow embed-audio FILE.wav --model {reg.section.model_name}@"
                               f"{reg.section.alias}`")
