"""Synthetic speakers: one identity shared by both modalities, and a speaker-disjoint train/val/test split.

A :class:`Speaker` is an espeak-ng voice (English accent + voice variant, distinct for every speaker of a set),
a base pitch and speaking rate, and a face (:class:`~repflow.families.av.faces.FaceIdentity`). All of it is
static: the only things that change between a speaker's clips are the words, the emotion (which shifts
pitch, rate and intonation range, see :mod:`repflow.families.av.emotions`) and the timing.

Splits are by speaker, never by clip, so a model is tested on voices and faces it has never seen.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from repflow.families.av.emotions import Emotion, emotion as as_emotion
from repflow.families.av.faces import FaceIdentity, face_identity
from repflow.media.speech import ENGLISH_ACCENTS, PITCH_RANGE, RATE_RANGE

__all__ = ["Speaker", "make_speakers", "split_speakers", "VOICE_VARIANTS", "BASE_PITCH", "BASE_RATE",
           "MAX_SPEAKERS", "SPLITS"]

VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5")
"""espeak-ng's classic male and female variants: voiced, with an F0 that follows the pitch setting (the
whisper and robot/novelty variants are left out)."""
BASE_PITCH = (28, 62)
"""Range of a speaker's espeak base pitch (inclusive); with the emotions' shifts every clip stays well inside
espeak's 0..99."""
BASE_RATE = (140, 180)
"""Range of a speaker's speaking rate, words per minute (inclusive); the emotions scale it by 0.82..1.18."""
MAX_SPEAKERS = len(ENGLISH_ACCENTS) * len(VOICE_VARIANTS)
"""Distinct (accent, variant) voices available, so the most speakers a set can have."""
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Speaker:
    """``id``: index in its set; ``voice``: espeak ``accent+variant``; ``pitch``: espeak base pitch (0..99);
    ``rate``: words per minute; ``face``: the face drawn for this speaker."""

    id: int
    voice: str
    pitch: int
    rate: int
    face: FaceIdentity

    def voice_settings(self, emotion: int | str | Emotion) -> dict[str, int | str]:
        """Keyword arguments for :func:`repflow.media.speech.synthesize_with_phonemes`: this voice
        with ``emotion``'s pitch shift, rate scale and intonation range, clipped to what espeak accepts."""
        mood = as_emotion(emotion)
        return {"voice": self.voice,
                "pitch": int(np.clip(self.pitch + mood.pitch_shift, *PITCH_RANGE)),
                "rate": int(np.clip(round(self.rate * mood.rate_scale), *RATE_RANGE)),
                "pitch_range": mood.pitch_range}


def _check_count(name: str, value: int, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low or (
            high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} {value!r} must be an integer in {allowed}")
    return int(value)


def make_speakers(n: int, seed: int) -> list[Speaker]:
    """``n`` speakers (1..:data:`MAX_SPEAKERS`) with distinct voices, drawn from ``seed``.

    The voices are a seeded draw without replacement from every (accent, variant) pair; speaker i's pitch,
    rate and face come from a generator seeded by ``(seed, i)``, so the first k speakers of a larger set are
    the same as a set of k (only the voice order depends on nothing but ``seed``).
    """
    n = _check_count("n_speakers", n, 1, MAX_SPEAKERS)
    voices = [f"{accent}+{variant}" for accent, variant in itertools.product(ENGLISH_ACCENTS, VOICE_VARIANTS)]
    order = np.random.default_rng(seed).permutation(len(voices))
    speakers = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        speakers.append(Speaker(id=i, voice=voices[order[i]],
                                pitch=int(rng.integers(BASE_PITCH[0], BASE_PITCH[1] + 1)),
                                rate=int(rng.integers(BASE_RATE[0], BASE_RATE[1] + 1)),
                                face=face_identity(int(rng.integers(2 ** 32)))))
    return speakers


def split_speakers(speakers: Sequence[Speaker] | Sequence[int], *, seed: int, val_fraction: float = 0.1,
                   test_fraction: float = 0.2) -> dict[str, tuple[int, ...]]:
    """Speaker ids for ``train``, ``val`` and ``test`` (sorted tuples): every speaker in exactly one split.

    ``speakers``: :class:`Speaker` objects or their ids (distinct). ``val_fraction``/``test_fraction``:
    shares of the speakers in [0, 1), rounded, but at least one speaker each when the fraction is above 0;
    train keeps the rest and must keep at least one. Which speakers go where is a seeded shuffle.
    """
    ids = [s.id if isinstance(s, Speaker) else s for s in speakers]
    if len(set(ids)) != len(ids):
        raise ValueError(f"speakers must be distinct, got ids {sorted(ids)}")
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} {fraction!r} must be in [0, 1)")
    n_val, n_test = (max(1, round(len(ids) * f)) if f > 0 else 0 for f in (val_fraction, test_fraction))
    if len(ids) - n_val - n_test < 1:
        raise ValueError(f"{len(ids)} speakers cannot fill val ({n_val}), test ({n_test}) and keep one for train; "
                         f"use more speakers or smaller fractions")
    shuffled = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    parts = (shuffled[n_val + n_test:], shuffled[:n_val], shuffled[n_val:n_val + n_test])
    return {name: tuple(sorted(part)) for name, part in zip(SPLITS, parts)}
