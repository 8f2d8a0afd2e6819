"""The audio family's params sections, under ``audio:`` in ``params.yaml`` (``audio.prep``, ``audio.train``, ...).

Names of sources, methods and pooling modes come from the tables next to their code; label names a probe
may ask for come from the source's table (:data:`~repflow.families.audio.sources.SOURCE_LABELS`), so a task
the data cannot have is a params error before anything runs.
"""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from repflow.config import Section
from repflow.family import ModelSpec
from repflow.families.audio.features import FeatureError, MelSettings
from repflow.families.audio.models import FREQ_POOLING
from repflow.families.audio.sources import (AUDIO_SOURCES, AUTO_LABEL, DEFAULT_WORDS, SOURCE_LABELS, attack_task,
                                            stratify_label)
from repflow.families.audio.ssl import AUDIO_METHODS
from repflow.registry import literal_of

__all__ = ["SECTIONS", "check", "POSITION_SENSITIVE"]

POSITION_SENSITIVE = {"pitch_band": True, "word": False, "voice": False, "accent": False, "language": False}
"""Which probe tasks depend on where content sits in frequency (the advneg claim's split). A task not listed
(an audiofolder's ``label``) is reported as unknown."""


class AudioPrepParams(Section):
    """Read an audio source, resample it to one rate, split it and write flac shards."""

    source: literal_of(AUDIO_SOURCES) = "espeak"  # type: ignore[valid-type]
    path: str | None = Field(None, description="folder of asterisk / audiofolder; null = the source's default")
    words: list[str] = Field(default_factory=lambda: list(DEFAULT_WORDS), min_length=2, max_length=200,
                             description="espeak: the words synthesised (each one class of the 'word' task)")
    clips_per_word: int = Field(60, ge=3, le=10_000, description="espeak: clips synthesised per word")
    pitch_bands: int = Field(3, ge=2, le=10, description="espeak: equal-width bands of the pitch parameter 0-99")
    max_seconds: float = Field(2.0, gt=0.0, le=60.0, description="longer files are cut to this (seconds)")
    stratify: str = Field(AUTO_LABEL, description="label whose classes every split keeps in proportion; 'auto' = the "
                                                  "source's first label (espeak, asterisk: word; audiofolder: label)")
    min_class_count: int = Field(3, ge=3, le=10_000, description="classes of `stratify` with fewer clips are dropped")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    shard_size: int = Field(1000, ge=1, le=1_000_000, description="clips per shard")

    @field_validator("words", mode="before")
    @classmethod
    def _words_are_text(cls, v):
        if isinstance(v, list) and any(isinstance(w, bool) for w in v):
            raise ValueError(f"{v}: words must be text, these are booleans (a YAML 1.1 writer turns unquoted "
                             "yes / no / on / off into booleans); quote those words")
        return v


class AudioFeatureParams(Section):
    """Log-mel settings (BYOL-A's defaults: 16 kHz, 64 mel bins from 60 to 7800 Hz, 10 ms hop, 96 frames)."""

    sample_rate: int = Field(16000, ge=8000, le=48000, description="Hz; every clip is resampled to it")
    n_fft: int = Field(1024, ge=16, le=16384)
    win_length: int = Field(1024, ge=16, le=16384)
    hop_length: int = Field(160, ge=1, le=16384)
    n_mels: int = Field(64, ge=8, le=256)
    f_min: float = Field(60.0, ge=0.0, le=24000.0, description="Hz")
    f_max: float = Field(7800.0, gt=0.0, le=24000.0, description="Hz, at most sample_rate / 2")
    frames: int = Field(96, ge=8, le=4096, description="STFT frames per patch (hop_length / sample_rate s each)")

    @model_validator(mode="after")
    def _usable(self) -> "AudioFeatureParams":
        try:
            self.settings().validate()
        except FeatureError as exc:
            raise ValueError(str(exc)) from None
        return self

    def settings(self) -> MelSettings:
        return MelSettings(**self.model_dump())


class AudioEncoderParams(Section):
    channels: int = Field(32, ge=4, le=1024, description="conv channels (AudioNTT2020: 64; 32 fits a CPU)")
    blocks: int = Field(3, ge=1, le=5)
    dim: int = Field(512, ge=8, le=8192)
    freq_pool: literal_of(FREQ_POOLING) = "mean"  # type: ignore[valid-type]
    proj_dim: int = Field(128, ge=4, le=4096)


class AudioAugmentParams(Section):
    """BYOL-A's augmentations (official defaults), with one difference: the random resize crop moves content by
    at most ``max_freq_shift`` mel bins, so a positive view never makes the frequency change a negative makes."""

    mixup_ratio: float = Field(0.4, ge=0.0, lt=1.0)
    virtual_scale: tuple[float, float] = (1.0, 1.5)
    freq_scale: tuple[float, float] = (0.6, 1.5)
    time_scale: tuple[float, float] = (0.6, 1.5)
    max_freq_shift: float | None = Field(4.0, gt=0.0, le=256.0,
                                         description="mel bins any row of a positive view may move; null = "
                                                     "BYOL-A's unbounded crop (up to ~40 of 64 bins)")

    @field_validator("virtual_scale", "freq_scale", "time_scale")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 4:
            raise ValueError(f"needs 0 < low <= high <= 4, got {list(v)}")
        return v


class AudioNegativeParams(Section):
    """advneg's positional negatives. Shifts are in mel bins; the smallest default (12 of 64) is three times the
    most a positive view moves content (``augment.max_freq_shift``), so the negatives are changes the positives
    never make."""

    k: int = Field(1, ge=1, le=32, description="negatives chosen per clip (the most similar candidates)")
    weight: float = Field(1.0, gt=0.0, le=100.0, description="λ on the negatives' terms of the loss")
    shifts: list[int] = Field(default_factory=lambda: [12, 20], min_length=0, max_length=16,
                              description="frequency shifts in mel bins, each used up and down")
    reorders: int = Field(1, ge=0, le=16, description="reorders of each clip's sounding time blocks (a clip with "
                                                      "fewer than 2 has none)")
    blocks: int = Field(4, ge=2, le=32, description="time blocks a reorder cuts the patch into")
    sound_threshold: float = Field(0.5, ge=0.0, le=1.0,
                                   description="a block holds sound when its loudest frame is this far from the "
                                               "clip's quietest frame level to its loudest; only those are reordered")

    @field_validator("shifts")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(s < 1 for s in v):
            raise ValueError(f"shifts are positive mel-bin counts (each is used up and down), got {v}")
        return v


class AudioTrainParams(Section):
    method: literal_of(AUDIO_METHODS) = "baseline"  # type: ignore[valid-type]
    encoder: AudioEncoderParams = AudioEncoderParams()
    augment: AudioAugmentParams = AudioAugmentParams()
    negatives: AudioNegativeParams = AudioNegativeParams()
    epochs: int = Field(10, ge=0, le=10_000, description="0 = the randomly initialised encoder (the floor)")
    batch_size: int = Field(128, ge=2, le=8192)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-6, ge=0.0, le=1.0)
    temperature: float = Field(0.1, gt=0.0, le=10.0)


class AudioEvaluateParams(Section):
    """Linear probes per label task, the position-sensitivity score, PGD on waveforms."""

    tasks: list[str] | None = Field(None, description="label tasks to probe; null = every label of the source")
    probe_epochs: int = Field(100, ge=1, le=10_000)
    probe_lr: float = Field(0.01, gt=0.0, le=10.0)
    probe_batch_size: int = Field(256, ge=1, le=65_536)
    sensitivity_shifts: list[int] = Field(default_factory=lambda: [8, -8, 16, -16], min_length=1, max_length=16,
                                          description="frequency shifts (mel bins) of the sensitivity score")
    attack_task: str | None = Field(AUTO_LABEL, description="probe task attacked with PGD on waveforms; null = none; "
                                                             "'auto' = the source's first label")
    eps: list[float] = Field(default_factory=lambda: [0.002, 0.008], min_length=1, max_length=8,
                             description="l-inf radii in waveform amplitude (full scale = 1)")
    pgd_steps: int = Field(10, ge=1, le=1000)
    max_test: int = Field(200, ge=1, le=100_000, description="test clips attacked")
    attack_batch_size: int = Field(100, ge=1, le=10_000)

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: list[float]) -> list[float]:
        if any(not 0 < e <= 1 for e in v):
            raise ValueError(f"every eps must be in (0, 1] (waveform amplitude), got {v}")
        return sorted(set(v))


# The model the register stage registers; its params below default to it (one source for both).
REGISTERED_MODEL = ModelSpec("repflow-audio-encoder", metric="probe_acc_mean", direction="max", alias="champion")


class AudioRegisterParams(Section):
    model_name: str = REGISTERED_MODEL.name
    alias: str = REGISTERED_MODEL.alias
    criterion: str = Field(REGISTERED_MODEL.metric,
                           description="evaluate metric the alias is gated on (higher is better)")


SECTIONS = {"prep": AudioPrepParams, "features": AudioFeatureParams, "train": AudioTrainParams,
            "evaluate": AudioEvaluateParams, "register": AudioRegisterParams}


def check(params) -> None:
    """Rules across sections: the probe tasks and the stratifying label exist for the source; the encoder's
    pooling fits the mel bins."""
    a = params.audio
    labels = SOURCE_LABELS[a.prep.source]
    attacked = attack_task(params)
    for key, names in (("audio.prep.stratify", [stratify_label(params)]),
                       ("audio.evaluate.tasks", a.evaluate.tasks or []),
                       ("audio.evaluate.attack_task", [attacked] if attacked else [])):
        missing = [n for n in names if n not in labels]
        if missing:
            raise ValueError(f"{key} = {missing}: source {a.prep.source!r} has no such label; its labels: "
                             f"{list(labels)}")
    if a.evaluate.tasks is not None and attacked and attacked not in a.evaluate.tasks:
        raise ValueError(f"audio.evaluate.attack_task = {attacked!r} is not one of audio.evaluate.tasks "
                         f"{a.evaluate.tasks}")
    enc, feat = a.train.encoder, a.features
    if feat.n_mels % 2 ** enc.blocks:
        raise ValueError(f"audio.features.n_mels = {feat.n_mels} must be divisible by 2**audio.train.encoder.blocks "
                         f"= {2 ** enc.blocks} (each conv block halves the mel axis)")
    if feat.frames < 2 ** enc.blocks:
        raise ValueError(f"audio.features.frames = {feat.frames} is shorter than 2**audio.train.encoder.blocks = "
                         f"{2 ** enc.blocks} frames")
    bound = a.train.augment.max_freq_shift
    if a.train.method == "advneg" and bound is not None and a.train.negatives.shifts \
            and bound >= min(a.train.negatives.shifts):
        raise ValueError(f"audio.train.augment.max_freq_shift = {bound} must be smaller than the smallest of "
                         f"audio.train.negatives.shifts {a.train.negatives.shifts}: a positive view may not make "
                         "the change a negative makes")
    always = 2 * len(a.train.negatives.shifts) + 1
    if a.train.method == "advneg" and a.train.negatives.k > always:
        raise ValueError(f"audio.train.negatives.k = {a.train.negatives.k} must be at most {always} (2 × the "
                         "number of shifts + time reversal): a reorder is no candidate for a clip with fewer than 2 "
                         "sounding blocks")
    too_far = [s for s in a.train.negatives.shifts + [abs(s) for s in a.evaluate.sensitivity_shifts]
               if s >= feat.n_mels]
    if too_far:
        raise ValueError(f"frequency shifts {too_far} (audio.train.negatives.shifts / "
                         f"audio.evaluate.sensitivity_shifts) must be smaller than audio.features.n_mels = "
                         f"{feat.n_mels}")
