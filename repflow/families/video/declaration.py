"""The video watermarking family's declaration: its stages, params sections, flow, methods and commands."""
from __future__ import annotations

from repflow.family import Family, Method, Stage, methods_of
from repflow.families.video.params import REGISTERED_MODEL, SECTIONS, check

_STAGES = "repflow.families.video.stages"


def _methods() -> list[Method]:
    from repflow.families.video.models import WATERMARKERS

    return methods_of(WATERMARKERS, "watermarker", stage="train")


FAMILY = Family(
    name="video",
    summary="video watermarking: ItoV (time merged into channels, depthwise blocks, frame loss) vs per-frame and "
            "3-D conv watermarkers, robust to H.264",
    params=SECTIONS,
    check=check,
    flow="repflow.families.video.flow:video_flow",
    methods=_methods,
    algorithms=("distortions", "losses", "models", "training"),
    commands="repflow.families.video.commands:add_commands",
    stages=(
        Stage("prep", f"{_STAGES}.prep", "data/video/prep", ("seed", "video.prep"),
              summary="clips of T frames from real videos (or pan/zoom over photos), split by video → npy shards"),
        Stage("train", f"{_STAGES}.train", "artifacts/video/train", ("seed", "video.train"), {"shards": "prep"},
              summary="watermarker for L-bit messages through a distortion layer, frame loss, resumable"),
        Stage("evaluate", f"{_STAGES}.evaluate", "reports/video/evaluate", ("seed", "video.evaluate"),
              {"shards": "prep", "models": "train"},
              summary="PSNR / SSIM, per-frame PSNR spread, bit accuracy per distortion and H.264 CRF, MACs, clips/s"),
        Stage("register", f"{_STAGES}.register", "reports/video/register", ("video.register",),
              {"models": "train", "evaluation": "evaluate"},
              registers=(REGISTERED_MODEL,),
              summary="MLflow registry; the alias moves only when the robust bit accuracy beats its holder"),
    ),
)
