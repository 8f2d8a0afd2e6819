"""The audio family's declaration: its stages, params sections, flow, methods and commands."""
from __future__ import annotations

from repflow.family import Family, Method, Stage, methods_of
from repflow.families.audio.params import REGISTERED_MODEL, SECTIONS, check

_STAGES = "repflow.families.audio.stages"


def _methods() -> list[Method]:
    from repflow.families.audio.ssl import AUDIO_METHODS

    return methods_of(AUDIO_METHODS, "train", stage="train")


FAMILY = Family(
    name="audio",
    summary="self-supervised audio representations with adversarial positional negatives (torchaudio)",
    params=SECTIONS,
    check=check,
    flow="repflow.families.audio.flow:audio_flow",
    methods=_methods,
    algorithms=("advneg", "augment", "features", "pitch", "ssl", "models"),
    commands="repflow.families.audio.commands:add_commands",
    stages=(
        Stage("prep", f"{_STAGES}.prep", "data/audio/prep", ("seed", "audio.prep", "audio.features"),
              summary="espeak / asterisk / audio folder → resampled flac shards, log-mel statistics"),
        Stage("train", f"{_STAGES}.train", "artifacts/audio/train", ("seed", "audio.train"), {"shards": "prep"},
              summary="AudioNTT encoder: SimCLR on BYOL-A views (baseline) or + positional negatives (advneg)"),
        Stage("evaluate", f"{_STAGES}.evaluate", "reports/audio/evaluate", ("seed", "audio.evaluate"),
              {"shards": "prep", "encoder": "train"},
              summary="linear probes per label, position sensitivity, PGD on waveforms"),
        Stage("register", f"{_STAGES}.register", "reports/audio/register", ("audio.register",),
              {"encoder": "train", "evaluation": "evaluate"},
              registers=(REGISTERED_MODEL,),
              summary="MLflow registry; the alias moves only when the mean probe accuracy beats its holder"),
    ),
)
