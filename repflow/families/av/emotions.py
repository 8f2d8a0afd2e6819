"""The emotions of the synthetic audio-visual corpus: each one a static per-clip setting of the face (brows,
mouth curve) and of the voice (pitch, speaking rate, intonation range), so emotion is visible in both
modalities, the way MDVAE's static latent is meant to capture it.

The voice settings follow the usual acoustic picture of acted emotion: happy speech is higher, faster and
livelier in pitch; sad speech lower, slower and flatter; angry speech fast with a wide pitch range but less
raised than happy. The face settings are the textbook brow/mouth cues (happy: raised brows, smile; sad:
inner brow ends raised, mouth corners down; angry: brows lowered and pulled in, a tight, slightly down mouth).
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

__all__ = ["Emotion", "EMOTIONS", "EMOTION_NAMES", "emotion"]


@dataclass(frozen=True)
class Emotion:
    """``brow_raise``: brows up (+) or down (−), in units of a brow's thickness-ish offset (−1..1);
    ``brow_tilt``: inner brow ends up (+, sad) or down (−, angry), −1..1; ``mouth_curve``: corners up
    (+, smile) or down (−), −1..1. ``pitch_shift``: added to the speaker's espeak pitch (0..99 scale);
    ``rate_scale``: multiplies the speaker's rate (words per minute); ``pitch_range``: espeak's intonation
    range (0 monotone .. 99; 50 is espeak's default)."""

    name: str
    brow_raise: float
    brow_tilt: float
    mouth_curve: float
    pitch_shift: int
    rate_scale: float
    pitch_range: int


EMOTIONS: tuple[Emotion, ...] = (
    Emotion("neutral", 0.0, 0.0, 0.0, 0, 1.0, 50),
    Emotion("happy", 0.6, 0.0, 1.0, 14, 1.12, 80),
    Emotion("sad", 0.1, 1.0, -0.8, -14, 0.82, 20),
    Emotion("angry", -0.7, -1.0, -0.35, 5, 1.18, 70),
)
"""Every emotion; its index is its id (the clip's static label)."""
EMOTION_NAMES = tuple(e.name for e in EMOTIONS)


def emotion(which: int | str | Emotion) -> Emotion:
    """The :class:`Emotion` for an id, a name or an Emotion; anything else is a ValueError listing them."""
    if isinstance(which, Emotion):
        return which
    if isinstance(which, str) and which in EMOTION_NAMES:
        return EMOTIONS[EMOTION_NAMES.index(which)]
    if isinstance(which, Integral) and not isinstance(which, bool) and 0 <= which < len(EMOTIONS):
        return EMOTIONS[int(which)]
    raise ValueError(f"emotion {which!r} is not one of {', '.join(EMOTION_NAMES)} "
                     f"(or their ids 0..{len(EMOTIONS) - 1})")
