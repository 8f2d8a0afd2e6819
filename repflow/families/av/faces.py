"""A procedurally drawn talking face: static identity and emotion, a mouth that takes a viseme's shape.

:func:`render_face` draws with PIL at 4x the requested size and box-filters down, so the small frames are
antialiased (edges move smoothly with the mouth instead of jumping whole pixels). The face is made of a hair
mass, a skin ellipse, eyes with irises, brows, a nose line and a mouth. The mouth is a lip line when closed;
open, it is a dark opening with the lips drawn around it (so even a slight opening shows) and teeth once it
opens wider; the emotion's mouth curve raises or lowers its corners. Every shape is a polygon, ellipse or
line: PIL's ``chord`` leaves stray pixels far from its arc at some angles.

What belongs to whom:
- identity (:class:`FaceIdentity`, fixed per speaker, drawn by :func:`face_identity` from a seed): face width
  and height, skin, hair and iris colours, hair line, eye height, spacing and size, mouth width and height;
- emotion (:mod:`repflow.families.av.emotions`, fixed per clip): brow height and tilt, mouth-corner curve;
- per frame: the viseme (mouth openness, width, roundness) and how open the eyes are (blinks).

Rendering is pure and deterministic (same arguments, same bytes); results are cached, since a clip repeats a
handful of mouth shapes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from repflow.families.av.emotions import Emotion, emotion as as_emotion
from repflow.families.av.visemes import VISEMES, Viseme

__all__ = ["FaceIdentity", "face_identity", "render_face", "BACKGROUND", "FACE_CENTER", "MOUTH_OPENING"]

BACKGROUND = (196, 206, 218)
"""Backdrop colour, the same for everyone, so identity lives in the face alone."""
FACE_CENTER = (0.5, 0.54)
"""Face centre (x, y) as fractions of the frame side."""
MOUTH_OPENING = (70, 22, 32)
"""Colour of the inside of an open mouth."""
_SUPERSAMPLE = 4
_LIP_WIDTH = 0.03
_SKIN_TONES = ((255, 224, 196), (241, 194, 150), (224, 172, 120), (198, 140, 90), (150, 100, 62), (100, 66, 44))
_HAIR_COLOURS = ((25, 20, 18), (70, 45, 30), (120, 80, 45), (205, 170, 100), (160, 70, 35), (150, 150, 150))
_IRIS_COLOURS = ((70, 45, 25), (50, 90, 150), (60, 110, 70), (30, 30, 30))


@dataclass(frozen=True)
class FaceIdentity:
    """A speaker's face; lengths are fractions of the frame side. ``face_width``/``face_height``: the skin
    ellipse's full extent; ``hair_line``: how far down the fringe reaches (0 high forehead .. 1 low);
    ``eye_height``: y of the eye centres; ``eye_spacing``: half the distance between them; ``eye_size``: eye
    half-width; ``mouth_width``: mouth half-width at a neutral viseme; ``mouth_height``: y of the mouth line.
    Colours are RGB tuples of ints."""

    face_width: float
    face_height: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    hair_line: float
    eye_height: float
    eye_spacing: float
    eye_size: float
    mouth_width: float
    mouth_height: float


def face_identity(seed: int) -> FaceIdentity:
    """A face drawn from ``seed`` (any integer; the same seed, the same face): a skin tone, hair and iris colour
    from small palettes with a little jitter, and proportions drawn uniformly in ranges that keep every part
    inside the frame and the eyes, nose and mouth in order."""
    rng = np.random.default_rng(seed)

    def jittered(palette: tuple[tuple[int, int, int], ...], spread: int) -> tuple[int, int, int]:
        base = np.asarray(palette[rng.integers(len(palette))])
        return tuple(int(c) for c in np.clip(base + rng.integers(-spread, spread + 1, 3), 0, 255))

    return FaceIdentity(
        face_width=float(rng.uniform(0.56, 0.72)), face_height=float(rng.uniform(0.74, 0.86)),
        skin=jittered(_SKIN_TONES, 12), hair=jittered(_HAIR_COLOURS, 15), iris=jittered(_IRIS_COLOURS, 15),
        hair_line=float(rng.uniform(0.0, 1.0)), eye_height=float(rng.uniform(0.42, 0.48)),
        eye_spacing=float(rng.uniform(0.11, 0.15)), eye_size=float(rng.uniform(0.045, 0.06)),
        mouth_width=float(rng.uniform(0.085, 0.12)), mouth_height=float(rng.uniform(0.72, 0.76)))


def _shade(colour: tuple[int, int, int], factor: float, tint: tuple[int, int, int] = (0, 0, 0),
           weight: float = 0.0) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor * (1 - weight) + t * weight, 0, 255)) for c, t in zip(colour, tint))


def _mouth_curves(face: FaceIdentity, mood: Emotion, viseme: Viseme) -> tuple[np.ndarray, np.ndarray, float]:
    """Upper and lower lip edges of the opening, (N, 2) unit-frame points left to right, and the half height."""
    cx = FACE_CENTER[0]
    half_width = face.mouth_width * (0.7 + 0.6 * viseme.width) * (1 - 0.45 * viseme.roundness)
    half_height = 0.09 * viseme.openness
    x = np.linspace(-1.0, 1.0, 25)
    corner_lift = -0.028 * mood.mouth_curve * x ** 2
    arch = np.sqrt(1 - x ** 2) ** (1.0 - 0.5 * viseme.roundness)
    y = face.mouth_height + corner_lift + 0.028 * mood.mouth_curve * 0.35
    upper = np.stack([cx + x * half_width, y - 0.45 * half_height * arch], axis=1)
    lower = np.stack([cx + x * half_width, y + half_height * arch], axis=1)
    return upper, lower, half_height


@lru_cache(maxsize=2048)
def _render(face: FaceIdentity, mood: Emotion, viseme: Viseme, size: int, eyes_open: float) -> np.ndarray:
    side = size * _SUPERSAMPLE
    image = Image.new("RGB", (side, side), BACKGROUND)
    draw = ImageDraw.Draw(image)

    def px(points) -> list[tuple[float, float]]:
        return [(float(u) * side, float(v) * side) for u, v in np.asarray(points).reshape(-1, 2)]

    def box(left: float, top: float, right: float, bottom: float) -> list[float]:
        return [left * side, top * side, right * side, bottom * side]

    cx, cy = FACE_CENTER
    half_w, half_h = face.face_width / 2, face.face_height / 2
    top = cy - half_h
    draw.ellipse(box(cx - half_w - 0.03, top - 0.04, cx + half_w + 0.03, cy + 0.1), fill=face.hair)
    draw.ellipse(box(cx - half_w, top, cx + half_w, cy + half_h), fill=face.skin)
    fringe = np.radians(46 - 10 * face.hair_line)
    arc = np.linspace(np.pi + fringe, 2 * np.pi - fringe, 33)
    draw.polygon(px(np.stack([cx + half_w * np.cos(arc), cy + half_h * np.sin(arc)], axis=1)), fill=face.hair)

    thin = max(1, round(0.022 * side))
    for s in (-1, 1):
        ex = cx + s * face.eye_spacing
        eye_half_h = face.eye_size * 0.62 * eyes_open
        if eyes_open < 0.2:
            draw.line(px([[ex - face.eye_size, face.eye_height], [ex + face.eye_size, face.eye_height]]),
                      fill=_shade(face.skin, 0.55), width=thin)
        else:
            draw.ellipse(box(ex - face.eye_size, face.eye_height - eye_half_h, ex + face.eye_size,
                             face.eye_height + eye_half_h), fill=(245, 245, 240), outline=_shade(face.skin, 0.6),
                         width=max(1, thin // 2))
            iris = min(face.eye_size * 0.5, eye_half_h)
            draw.ellipse(box(ex - iris, face.eye_height - iris, ex + iris, face.eye_height + iris), fill=face.iris)
        inner, outer = ex - s * face.eye_size * 0.9, ex + s * face.eye_size * 1.25
        base = face.eye_height - face.eye_size * 1.7 - mood.brow_raise * face.eye_size * 0.8
        draw.line(px([[inner, base - mood.brow_tilt * face.eye_size * 0.75],
                      [outer, base + mood.brow_tilt * face.eye_size * 0.3]]),
                  fill=_shade(face.hair, 0.7), width=max(1, round(0.03 * side)))

    nose_top, nose_tip = face.eye_height + 0.03, face.mouth_height - 0.09
    draw.line(px([[cx, nose_top], [cx - 0.02, nose_tip], [cx + 0.012, nose_tip + 0.01]]),
              fill=_shade(face.skin, 0.72), width=thin, joint="curve")

    upper, lower, half_height = _mouth_curves(face, mood, viseme)
    lip = _shade(face.skin, 0.8, (175, 45, 65), 0.6)
    lip_width = max(1, round(_LIP_WIDTH * side))
    if half_height <= 0:
        draw.line(px(upper), fill=lip, width=lip_width, joint="curve")
    else:
        draw.polygon(px(np.concatenate([upper, lower[::-1]])), fill=MOUTH_OPENING)
        if viseme.openness > 0.3:
            teeth = upper.copy()
            teeth[:, 1] += 0.35 * half_height * np.sqrt(1 - np.linspace(-1, 1, len(upper)) ** 2)
            draw.polygon(px(np.concatenate([upper, teeth[::-1]])), fill=(238, 236, 228))
        outward = np.array([0.0, _LIP_WIDTH / 2])
        draw.line(px(upper - outward), fill=lip, width=lip_width, joint="curve")
        draw.line(px(lower + 1.3 * outward), fill=lip, width=round(lip_width * 1.3), joint="curve")
    frame = np.asarray(image.reduce(_SUPERSAMPLE), dtype=np.uint8)
    frame.setflags(write=False)
    return frame


def render_face(identity: FaceIdentity, emotion: int | str | Emotion, viseme: int | Viseme, size: int = 64, *,
                eyes_open: float = 1.0) -> np.ndarray:
    """The face of ``identity`` showing ``emotion`` (id, name or :class:`Emotion`) and mouth ``viseme`` (id
    into :data:`~repflow.families.av.visemes.VISEMES` or a :class:`Viseme`), as uint8 (size, size, 3) RGB.

    ``eyes_open``: 1 open, 0 shut (a blink), in between half-closed. ``size`` >= 16 pixels.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size {size!r} must be an integer >= 16 (pixels)")
    if not 0.0 <= float(eyes_open) <= 1.0:
        raise ValueError(f"eyes_open {eyes_open!r} must be in [0, 1]")
    if not isinstance(viseme, Viseme):
        if isinstance(viseme, bool) or not 0 <= int(viseme) < len(VISEMES) or int(viseme) != viseme:
            raise ValueError(f"viseme {viseme!r} must be a Viseme or an id in 0..{len(VISEMES) - 1}")
        viseme = VISEMES[int(viseme)]
    return _render(identity, as_emotion(emotion), viseme, size, round(float(eyes_open), 3)).copy()
