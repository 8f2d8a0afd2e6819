"""The super-resolution family's declaration: its stages, params sections, flow, methods and commands."""
from __future__ import annotations

from repflow.family import Family, Method, Stage, methods_of
from repflow.families.sr.params import REGISTERED_MODEL, SECTIONS, check

_STAGES = "repflow.families.sr.stages"


def _methods() -> list[Method]:
    from repflow.families.sr.models import SR_MODELS

    return methods_of(SR_MODELS, "sr-model", stage="train")


FAMILY = Family(
    name="sr",
    summary="single-image super-resolution: SHSR vs an EDSR-style baseline vs bicubic (Y-PSNR / SSIM)",
    params=SECTIONS,
    check=check,
    flow="repflow.families.sr.flow:sr_flow",
    methods=_methods,
    algorithms=("models", "inference", "imresize", "metrics", "patches", "training"),
    commands="repflow.families.sr.commands:add_commands",
    stages=(
        Stage("prep", f"{_STAGES}.prep", "data/sr/prep", ("seed", "sr.prep"),
              summary="photos split by photo → HR patches + MATLAB-bicubic LR (×2/×3/×4), held-out photos"),
        Stage("train", f"{_STAGES}.train", "artifacts/sr/train", ("seed", "sr.train"), {"shards": "prep"},
              summary="one SR model per scale, L1 loss, resumable per epoch"),
        Stage("evaluate", f"{_STAGES}.evaluate", "reports/sr/evaluate", ("seed", "sr.evaluate"),
              {"shards": "prep", "models": "train"},
              summary="Y-PSNR / SSIM (border shaved), self-ensemble, params, MACs, images/s, crops"),
        Stage("register", f"{_STAGES}.register", "reports/sr/register", ("sr.register",),
              {"models": "train", "evaluation": "evaluate"},
              registers=(REGISTERED_MODEL,),
              summary="MLflow registry per scale; the alias moves only when Y-PSNR beats its holder"),
    ),
)
