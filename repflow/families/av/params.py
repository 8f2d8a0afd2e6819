"""The audio-visual family's params sections, under ``av:`` in ``params.yaml``."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from repflow.config import Section, check_held_out, distinct_names
from repflow.family import ModelSpec
from repflow.families.av.baselines import SEQUENCE_MODELS
from repflow.probe import FEW_LABEL_CLASSIFIERS

__all__ = ["SECTIONS", "check", "CRITERIA"]

CRITERIA = ("val_emotion_k10", "val_emotion_k5", "val_emotion_k2", "emotion_k10")
"""Metrics of av.evaluate the registry may gate on (higher is better): few-label emotion accuracy of the
registered model's static latent at k labels per class, on the validation speakers (``val_*``) or the test
speakers."""


class AvPrepParams(Section):
    """Audio-visual clips (synthetic talking faces with espeak-ng speech, or your own videos with sound), split
    by speaker so that no speaker is in two splits, as shards of frames, aligned power spectra and labels."""

    source: Literal["synthetic", "folder"] = "synthetic"
    path: str | None = Field(None, description="folder: <path>/<speaker>/<emotion>/<clip>.mp4 (any FFmpeg "
                                               "video with an audio stream)")
    speakers: int = Field(40, ge=3, le=104, description="synthetic: speakers (distinct espeak voices and faces)")
    clips_per_speaker: int = Field(24, ge=1, le=10_000, description="synthetic: clips per speaker, emotions "
                                                                   "balanced")
    frames: int = Field(30, ge=4, le=1000, description="T, frames per clip (1.2 s at 25 fps: MDVAE's length)")
    fps: float = Field(25.0, gt=0.0, le=120.0, description="synthetic: frame rate (25: a frame is 640 samples)")
    max_words: int = Field(2, ge=1, le=10, description="synthetic: words per clip (digits)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of speakers for validation")
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="share of speakers held out for test")
    shard_size: int = Field(64, ge=1, le=100_000, description="clips per shard")

    @model_validator(mode="after")
    def _source(self) -> AvPrepParams:
        check_held_out("val_fraction", self.val_fraction, self.test_fraction, "speakers")
        if self.source == "synthetic" and round(self.test_fraction * self.speakers) < 2:
            raise ValueError(f"test_fraction {self.test_fraction:g} of {self.speakers} speakers holds out fewer than "
                             "2 test speakers (information across speakers needs 2)")
        if self.source == "folder" and self.path is None:
            raise ValueError("source 'folder' needs path: <path>/<speaker>/<emotion>/<clip> video files")
        return self


class AvVqvaeParams(Section):
    """Stage 1: a VQ-VAE per modality (64×64 faces; power-spectrum frames), trained on the training speakers'
    frames; their pre-quantisation latents of every clip are written as sequences."""

    face_steps: int = Field(1500, ge=1, le=10_000_000)
    face_batch_size: int = Field(32, ge=1, le=100_000, description="frames per batch")
    speech_steps: int = Field(1500, ge=1, le=10_000_000)
    speech_batch_size: int = Field(256, ge=1, le=100_000, description="spectrum frames per batch")
    lr: float = Field(2e-3, gt=0.0, le=1.0, description="Adam")
    face_codes: int = Field(128, ge=2, le=65_536, description="face codebook size (official 512)")
    speech_codes: int = Field(64, ge=2, le=65_536, description="speech codebook size (official 64)")
    code_dim: int = Field(8, ge=1, le=1024, description="code vector size (official 32 faces / 8 speech)")
    face_checkpoint: str | None = Field(None, description="a face VQ-VAE .safetensors from an earlier av.vqvae "
                                                          "(or a registered version's checkpoint/) used as it is, "
                                                          "not trained; its frame size must match the clips'")
    speech_checkpoint: str | None = Field(None, description="likewise for the speech VQ-VAE")


class AvTrainParams(Section):
    """Stage 2: the representation models on the latent sequences: MDVAE and its baselines (unimodal DVAEs,
    a per-frame VAE), each from the same latents, one Ray task each."""

    models: list[str] = Field(default_factory=lambda: list(SEQUENCE_MODELS), min_length=1,
                              description=f"of {list(SEQUENCE_MODELS)}")
    steps: int = Field(1500, ge=1, le=10_000_000)
    batch_size: int = Field(32, ge=1, le=100_000, description="clips per batch")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Adam")
    kl_warmup: int = Field(300, ge=0, le=10_000_000, description="steps over which β rises from 0 to 1")
    w_dim: int = Field(32, ge=1, le=1024, description="static latent size (official 84)")

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str]) -> list[str]:
        return distinct_names(v, SEQUENCE_MODELS, "models")


class AvEvaluateParams(Section):
    """Few-label emotion (and identity) recognition from each model's static latent on held-out speakers,
    information of the static and dynamic latents about emotion and identity, latent swaps rendered as image
    strips and audio, and audio-visual denoising of corrupted faces."""

    ks: list[int] = Field(default_factory=lambda: [2, 5, 10], min_length=1, description="labels per class")
    draws: int = Field(10, ge=1, le=10_000, description="random draws of the k labelled clips per class")
    classifier: Literal[tuple(FEW_LABEL_CLASSIFIERS)] = "logistic"  # type: ignore[valid-type]
    denoise_clips: int = Field(64, ge=1, le=100_000, description="test clips corrupted for denoising")
    mask_strength: float = Field(0.35, gt=0.0, le=1.0, description="share of the face masked")
    noise_strength: float = Field(0.15, gt=0.0, le=1.0, description="std of the added noise ([0, 1] pixels)")

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError(f"ks {v}: every k must be >= 1")
        return sorted(set(v))


# The model the register stage registers; its params below default to it (one source for both).
REGISTERED_MODEL = ModelSpec("repflow-mdvae", metric="val_emotion_k10", direction="max", alias="champion")


class AvRegisterParams(Section):
    model: str = Field("mdvae", description="which trained model to register")
    model_name: str = REGISTERED_MODEL.name
    alias: str = REGISTERED_MODEL.alias
    criterion: str = Field(REGISTERED_MODEL.metric,
                           description=f"one of {list(CRITERIA)}; the alias moves when it is higher")


SECTIONS = {"prep": AvPrepParams, "vqvae": AvVqvaeParams, "train": AvTrainParams, "evaluate": AvEvaluateParams,
            "register": AvRegisterParams}


def check(params) -> None:
    """The registered model must be trained; the criterion must be a reported metric; k = 10 must be evaluated
    for the k10 criteria."""
    av = params.av
    if av.register.model not in av.train.models:
        raise ValueError(f"av.register.model = {av.register.model!r} is not in av.train.models {av.train.models}")
    if av.register.criterion not in CRITERIA:
        raise ValueError(f"av.register.criterion = {av.register.criterion!r}; allowed: {list(CRITERIA)}")
    k = int(av.register.criterion.rsplit("_k", 1)[1])
    if k not in av.evaluate.ks:
        raise ValueError(f"av.register.criterion {av.register.criterion!r} needs k = {k} in av.evaluate.ks "
                         f"{av.evaluate.ks}")
