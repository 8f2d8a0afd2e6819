"""The super-resolution family's params sections, under ``sr:`` in ``params.yaml``."""
from __future__ import annotations

from pydantic import Field, field_validator

from repflow.config import Section
from repflow.family import ModelSpec
from repflow.families.sr.models import SR_MODELS
from repflow.families.sr.photos import PHOTO_SOURCES
from repflow.registry import literal_of

__all__ = ["SECTIONS", "check", "SCALES"]

SCALES = (2, 3, 4)


def _scales(v: list[int]) -> list[int]:
    bad = [s for s in v if s not in SCALES]
    if bad or not v:
        raise ValueError(f"scales {v}: each must be one of {list(SCALES)}, at least one")
    return sorted(set(v))


class SRPrepParams(Section):
    """Photos → train HR patches (with their bicubic LR versions) and whole held-out photos, split by photo."""

    source: literal_of(PHOTO_SOURCES) = "skimage"  # type: ignore[valid-type]
    path: str | None = Field(None, description="folder of the 'folder' source (or another mate-backgrounds folder)")
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="share of photos held out whole for evaluation")
    hr_patch: int = Field(48, ge=24, le=1024, description="HR patch side (px), a multiple of 12 so ×2/×3/×4 divide it")
    patches: int = Field(1000, ge=1, le=1_000_000, description="training HR patches cut from the training photos")
    max_side: int = Field(480, ge=48, le=8192, description="held-out photos are centre-cropped to at most this side "
                                                              "(px, a multiple of 12) to bound CPU evaluation time")
    scales: list[int] = Field(default_factory=lambda: [2, 3, 4], description="LR versions written (×2, ×3, ×4)")
    shard_size: int = Field(500, ge=1, le=1_000_000)

    @field_validator("hr_patch", "max_side")
    @classmethod
    def _multiple_of_12(cls, v: int) -> int:
        if v % 12:
            raise ValueError(f"{v} px: must be a multiple of 12 so that ×2, ×3 and ×4 LR sizes are whole pixels")
        return v

    @field_validator("scales")
    @classmethod
    def _known_scales(cls, v: list[int]) -> list[int]:
        return _scales(v)


class SRTrainParams(Section):
    """One model per scale, L1 loss, Adam, random flips and 90° rotations (EDSR's training recipe)."""

    model: literal_of(SR_MODELS) = "shsr"  # type: ignore[valid-type]
    scales: list[int] = Field(default_factory=lambda: [2, 4], description="a model is trained for each")
    channels: int = Field(32, ge=4, le=512)
    blocks: int = Field(6, ge=1, le=64)
    epochs: int = Field(5, ge=1, le=10_000)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    lr_half_every: int = Field(200, ge=1, le=100_000, description="epochs between halvings of the learning rate")
    checkpoint_every: int = Field(1, ge=1, le=10_000, description="epochs between resumable checkpoints")

    @field_validator("scales")
    @classmethod
    def _known_scales(cls, v: list[int]) -> list[int]:
        return _scales(v)


class SREvaluateParams(Section):
    """Y-PSNR / SSIM on the held-out photos (BT.601 luma, ``scale`` border pixels shaved), plain and self-ensemble."""

    self_ensemble: bool = Field(True, description="also score the '+' model: the mean over 8 flips / rotations")
    tile: int = Field(192, ge=16, le=4096, description="LR tile side (px, context included) for whole photos")
    overlap: int = Field(40, ge=0, le=1024, description="LR context (px) on each side of a tile's core; at least "
                                                          "the model's receptive radius (SHSR 39, EDSR 36) for "
                                                          "tiles identical to one whole-image pass")
    speed_batch: int = Field(8, ge=1, le=1024, description="48×48 LR images per batch when timing images/s")


# The model the register stage registers; its params below default to it (one source for both).
REGISTERED_MODEL = ModelSpec("repflow-sr-x<scale>", metric="psnr_y", direction="max", alias="champion")


class SRRegisterParams(Section):
    model_prefix: str = Field(REGISTERED_MODEL.name.removesuffix("-x<scale>"),
                              description="registered as <prefix>-x2, <prefix>-x4, ...")
    alias: str = REGISTERED_MODEL.alias
    criterion: str = Field(REGISTERED_MODEL.metric, description="psnr_y or ssim_y (higher is better), per scale")


SECTIONS = {"prep": SRPrepParams, "train": SRTrainParams, "evaluate": SREvaluateParams, "register": SRRegisterParams}


def check(params) -> None:
    """Every trained scale needs its LR versions in the shards; tiles must leave room for their context."""
    sr = params.sr
    missing = [s for s in sr.train.scales if s not in sr.prep.scales]
    if missing:
        raise ValueError(f"sr.train.scales has {missing}, which sr.prep.scales {sr.prep.scales} does not write")
    if sr.evaluate.tile <= 2 * sr.evaluate.overlap:
        raise ValueError(f"sr.evaluate.tile = {sr.evaluate.tile} must exceed 2 × sr.evaluate.overlap "
                         f"= {2 * sr.evaluate.overlap}")
    if sr.register.criterion not in ("psnr_y", "ssim_y"):
        raise ValueError(f"sr.register.criterion = {sr.register.criterion!r}; allowed: 'psnr_y', 'ssim_y'")
