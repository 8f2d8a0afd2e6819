"""espeak-ng phoneme mnemonics → visemes: the mouth shape a talking face shows while the phoneme sounds.

A viseme is three numbers in [0, 1]: ``openness`` (jaw drop: 0 lips together, 1 wide open), ``width``
(lip spread: 0 narrow, 1 spread as in a smile) and ``roundness`` (lip rounding/protrusion). Phonemes that
look alike share one viseme (p/b/m are all a closed mouth), so a viseme id is the per-frame "what the lips
do" label of a clip, fewer classes than phonemes and all of them visible.

espeak's English mnemonics (as its phoneme events report them) carry stress marks in front (``'E``,
``,aU``) and variant marks behind (``O2``, ``t2``, ``i@3``, ``l/``); :func:`viseme_of` drops the stress
marks and then tries ever shorter prefixes, so variants fall back to their base phoneme. Anything still
unknown gets the ``neutral`` viseme (a relaxed, slightly open mouth) rather than an error, so a new espeak
version or another language never stops a corpus from being built.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Viseme", "VISEMES", "VISEME_IDS", "PHONEME_VISEMES", "SILENCE", "NEUTRAL", "viseme_of"]


@dataclass(frozen=True)
class Viseme:
    """A mouth shape; ``openness``, ``width``, ``roundness`` in [0, 1] (see the module docstring)."""

    name: str
    openness: float
    width: float
    roundness: float


VISEMES: tuple[Viseme, ...] = (
    Viseme("silence", 0.0, 0.45, 0.0),
    Viseme("bilabial", 0.0, 0.40, 0.15),
    Viseme("labiodental", 0.08, 0.50, 0.0),
    Viseme("dental", 0.18, 0.55, 0.0),
    Viseme("alveolar", 0.20, 0.60, 0.0),
    Viseme("postalveolar", 0.25, 0.35, 0.70),
    Viseme("velar", 0.32, 0.50, 0.0),
    Viseme("rhotic", 0.22, 0.40, 0.50),
    Viseme("open", 0.95, 0.60, 0.0),
    Viseme("mid", 0.60, 0.65, 0.0),
    Viseme("central", 0.42, 0.50, 0.0),
    Viseme("close-spread", 0.28, 0.90, 0.0),
    Viseme("mid-round", 0.62, 0.30, 0.80),
    Viseme("close-round", 0.25, 0.20, 1.0),
    Viseme("neutral", 0.20, 0.50, 0.0),
)
"""Every viseme; its index is its id (the per-frame label)."""
VISEME_IDS = {viseme.name: i for i, viseme in enumerate(VISEMES)}
SILENCE = VISEME_IDS["silence"]
"""Id of the closed, resting mouth of pauses and of the silence around speech."""
NEUTRAL = VISEME_IDS["neutral"]
"""Id of the mouth shown for a phoneme this table does not know."""

_GROUPS = {
    "silence": ("_", "_:", "_!", "_|", "||", "|"),
    "bilabial": ("p", "b", "m"),
    "labiodental": ("f", "v"),
    "dental": ("T", "D"),
    "alveolar": ("t", "d", "s", "z", "n", "l", "t#", "d#", "n-", "l/"),
    "postalveolar": ("S", "Z", "tS", "dZ"),
    "velar": ("k", "g", "N", "h", "x", "?"),
    "rhotic": ("r", "r-"),
    "open": ("a", "a#", "aa", "A", "A:", "A@", "A#", "aI", "aI@", "aI3", "aU", "aU@", "V"),
    "mid": ("E", "e", "e#", "eI", "e@", "E2", "E@"),
    "central": ("@", "@2", "@5", "@L", "3", "3:", "@-"),
    "close-spread": ("i", "i:", "I", "I#", "I2", "i@", "i@3", "j"),
    "mid-round": ("O", "O:", "O@", "OI", "o", "o@", "oU", "0", "0#"),
    "close-round": ("u", "u:", "U", "U@", "w", "W"),
}
PHONEME_VISEMES: dict[str, int] = {phoneme: VISEME_IDS[name] for name, phonemes in _GROUPS.items()
                                   for phoneme in phonemes}
"""espeak mnemonic (without stress marks) → viseme id, for the English phonemes espeak-ng 1.52 speaks."""
_STRESS_MARKS = "',%="


def viseme_of(phoneme: str) -> int:
    """The viseme id of espeak mnemonic ``phoneme``: stress marks dropped, then the longest known prefix;
    :data:`NEUTRAL` when no prefix is known (an empty or foreign mnemonic included)."""
    base = str(phoneme).lstrip(_STRESS_MARKS)
    for end in range(len(base), 0, -1):
        found = PHONEME_VISEMES.get(base[:end])
        if found is not None:
            return found
    return NEUTRAL
