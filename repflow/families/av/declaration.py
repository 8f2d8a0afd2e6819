"""The audio-visual family's declaration: its stages, params sections, flow and methods."""
from __future__ import annotations

from repflow.family import Family, Method, ModelSpec, Stage, methods_of
from repflow.families.av.params import REGISTERED_MODEL, SECTIONS, check

_STAGES = "repflow.families.av.stages"


def _methods() -> list[Method]:
    from repflow.families.av.baselines import SEQUENCE_MODELS

    return methods_of(SEQUENCE_MODELS, "representation", stage="train")


FAMILY = Family(
    name="av",
    summary="audio-visual speech representations: MDVAE (per-modality VQ-VAEs, then a multimodal dynamical VAE "
            "with a static latent w) vs unimodal dynamical VAEs and a per-frame VAE, on talking faces",
    params=SECTIONS,
    check=check,
    flow="repflow.families.av.flow:av_flow",
    methods=_methods,
    algorithms=("baselines", "blocks", "mdvae", "probes", "training", "vqvae"),
    stages=(
        Stage("prep", f"{_STAGES}.prep", "data/av/prep", ("seed", "av.prep"),
              summary="talking-face clips (espeak-ng speech + drawn faces, or your videos), split by speaker"),
        Stage("vqvae", f"{_STAGES}.vqvae", "data/av/vqvae", ("seed", "av.prep", "av.vqvae"), {"prep": "prep"},
              summary="stage 1: a VQ-VAE per modality; every clip's pre-quantisation latent sequences"),
        Stage("train", f"{_STAGES}.train", "artifacts/av/train", ("seed", "av.train"), {"latents": "vqvae"},
              summary="stage 2: MDVAE and its baselines on the same latents, one Ray task each"),
        Stage("evaluate", f"{_STAGES}.evaluate", "reports/av/evaluate", ("seed", "av.evaluate", "av.register.model"),
              {"prep": "prep", "latents": "vqvae", "models": "train"},
              summary="few-label emotion on held-out speakers, information of static vs dynamic latents, swaps, "
                      "denoising"),
        Stage("register", f"{_STAGES}.register", "reports/av/register", ("av.register",),
              {"prep": "prep", "latents": "vqvae", "models": "train", "evaluation": "evaluate"},
              registers=(REGISTERED_MODEL,
                         ModelSpec("repflow-av-face-vqvae", metric="face_test_psnr", direction="max",
                                   alias=REGISTERED_MODEL.alias),
                         ModelSpec("repflow-av-speech-vqvae", metric="speech_test_itakura_saito", direction="min",
                                   alias=REGISTERED_MODEL.alias)),
              summary="MLflow registry; each alias moves only when its score beats the holder's"),
    ),
)
