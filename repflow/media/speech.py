"""In-process espeak-ng speech synthesis through ctypes, from the library and voice data bundled in the
``espeakng-loader`` wheel (espeak-ng 1.52); no system espeak-ng is needed.

Why the library is loaded afresh for every clip: espeak-ng keeps synthesis state in C statics that nothing
resets (the pitch-flutter index, the waveform phase, the harmonic double buffer, the echo buffer), so the
same text, voice and parameters give a different waveform on each call of one loaded copy, and
``espeak_Initialize`` seeds its noise generator from the clock. Each :func:`synthesize` therefore opens the
library, initialises it, fixes the noise seeds, synthesises, terminates and closes it (about 3 ms a clip),
which makes the output byte-identical for identical inputs. The library is not re-entrant, so one lock
serialises all synthesis in a process; a worker process synthesises on its own.
"""
from __future__ import annotations

import _ctypes
import ctypes
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from operator import index
from pathlib import Path
from typing import Iterator

import numpy as np

__all__ = ["synthesize", "synthesize_with_phonemes", "PhonemeEvent", "available_variants", "available_accents",
           "ENGLISH_ACCENTS", "RATE_RANGE", "PITCH_RANGE", "espeak_version"]

RATE_RANGE = (80, 450)
"""Speaking rate in words per minute that espeak-ng accepts (inclusive)."""
PITCH_RANGE = (0, 99)
"""espeak-ng's base-pitch parameter (inclusive); the voice variant maps it to a frequency range."""
ENGLISH_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                   "en-us-nyc")
"""The English accents of espeak-ng 1.52 (its language names, lower case)."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_INITIALIZE_PHONEME_EVENTS = 0x0001
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_NOISE_SEED = 0

_LOCK = threading.Lock()
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_chunks: list[np.ndarray] = []
_phonemes: list[tuple[str, int]] = []


@_SYNTH_CALLBACK
def _collect(samples, count, events):
    if count > 0:
        _chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
    return 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """speak_lib.h's ``espeak_EVENT``; ``sample`` counts output samples from the start of the synthesis."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


@_SYNTH_CALLBACK
def _collect_with_phonemes(samples, count, events):
    if count > 0:
        _chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
    if events:
        event = ctypes.cast(events, ctypes.POINTER(_Event))
        i = 0
        while event[i].type != _EVENT_LIST_TERMINATED:
            if event[i].type == _EVENT_PHONEME:
                _phonemes.append((event[i].id.string.decode("utf-8", "replace"), int(event[i].sample)))
            i += 1
    return 0


class _Voice(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


def _paths() -> tuple[str, str]:
    try:
        import espeakng_loader
    except ImportError:
        raise RuntimeError("espeak: the espeakng-loader package is not installed "
                           "(pip install espeakng-loader==0.2.4)") from None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def _declare(lib: ctypes.CDLL) -> None:
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_Info.restype = ctypes.c_char_p


@contextmanager
def _fresh_library(options: int = 0) -> Iterator[tuple[ctypes.CDLL, int]]:
    """A newly loaded, initialised copy of the library (``espeak_Initialize`` ``options`` flags) and its sample
    rate in Hz; closed on exit. Call with ``_LOCK`` held."""
    lib_path, data_path = _paths()
    lib = ctypes.CDLL(lib_path)
    try:
        _declare(lib)
        sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), options)
        if sample_rate <= 0:
            raise RuntimeError(f"espeak: espeak_Initialize failed ({sample_rate}) with data {data_path}")
        try:
            lib.espeak_ng_SetRandSeed(_NOISE_SEED)
            ctypes.CDLL(None).srand(_NOISE_SEED)  # the Klatt-6 ("speechPlayer") variants draw from libc rand()
            lib.espeak_SetSynthCallback(_collect)
            yield lib, sample_rate
        finally:
            lib.espeak_Terminate()
    finally:
        _ctypes.dlclose(lib._handle)


def _languages(raw: int) -> list[str]:
    """espeak's ``languages`` field: repeated (priority byte, NUL-terminated name), ended by a zero byte."""
    names, at = [], raw
    while ctypes.c_ubyte.from_address(at).value != 0:
        name = ctypes.string_at(at + 1)
        names.append(name.decode())
        at += len(name) + 2
    return names


@lru_cache(maxsize=1)
def _voice_files() -> dict[str, str]:
    """Primary language name (lower case, e.g. ``en-gb``) -> the voice file espeak loads for it (``gmw/en``).
    ``espeak_SetVoiceByName`` finds voices by file name only, and en-gb's file is called ``en``."""
    with _LOCK, _fresh_library() as (lib, _):
        voices, found, i = lib.espeak_ListVoices(None), {}, 0
        while voices[i]:
            voice = voices[i].contents
            langs = _languages(voice.languages)
            if langs and voice.identifier:
                found.setdefault(langs[0].lower(), voice.identifier.decode())
            i += 1
    return found


@lru_cache(maxsize=1)
def espeak_version() -> str:
    """The bundled library's version string, e.g. ``1.52.0``, for provenance."""
    with _LOCK, _fresh_library() as (lib, _):
        return lib.espeak_Info(None).decode()


def available_accents() -> list[str]:
    """Every language/accent name the bundled data has a voice for (lower case, sorted)."""
    return sorted(_voice_files())


@lru_cache(maxsize=1)
def available_variants() -> list[str]:
    """Voice-variant names (the files of ``espeak-ng-data/voices/!v``: m1..m8, f1..f5, klatt, whisper, ...), sorted."""
    folder = Path(_paths()[1]) / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def _voice_name(voice: str) -> str:
    """``accent`` or ``accent+variant`` checked against the data and turned into what espeak loads. espeak
    would silently ignore an unknown variant and fall back to a near language for an unknown accent."""
    if not isinstance(voice, str) or not voice or voice.count("+") > 1:
        raise ValueError(f"espeak: voice {voice!r} is not 'accent' or 'accent+variant' (e.g. 'en-us+f3')")
    accent, _, variant = voice.partition("+")
    files = _voice_files()
    if accent.lower() not in files:
        raise ValueError(f"espeak: voice {voice!r}: unknown accent {accent!r}; English accents: "
                         f"{', '.join(ENGLISH_ACCENTS)} (all {len(files)}: available_accents())")
    if variant and variant not in available_variants():
        raise ValueError(f"espeak: voice {voice!r}: unknown variant {variant!r}; variants include m1..m8, f1..f5, "
                         f"klatt, whisper (all {len(available_variants())}: available_variants())")
    return files[accent.lower()] + (f"+{variant}" if variant else "")


def _in_range(name: str, value: int, allowed: tuple[int, int]) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        value = index(value)
    except TypeError:
        raise ValueError(f"espeak: {name} must be an integer in {allowed[0]}..{allowed[1]}, got {value!r}") from None
    if not allowed[0] <= value <= allowed[1]:
        raise ValueError(f"espeak: {name} {value!r} is outside {allowed[0]}..{allowed[1]}")
    return value


def _synthesize(text: str, voice: str, rate: int, pitch: int, pitch_range: int | None,
                phonemes: bool) -> tuple[np.ndarray, int, list[tuple[str, int]]]:
    """The checked synthesis behind :func:`synthesize` and :func:`synthesize_with_phonemes`: the waveform, its
    sample rate and, with ``phonemes``, the (mnemonic, start sample) of every phoneme event (else empty)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"espeak: text must be a non-empty string, got {text!r}")
    rate = _in_range("rate", rate, RATE_RANGE)
    pitch = _in_range("pitch", pitch, PITCH_RANGE)
    if pitch_range is not None:
        pitch_range = _in_range("pitch_range", pitch_range, PITCH_RANGE)
    name = _voice_name(voice)
    encoded = ctypes.create_string_buffer(text.encode())
    with _LOCK, _fresh_library(_INITIALIZE_PHONEME_EVENTS if phonemes else 0) as (lib, sample_rate):
        _chunks.clear()
        _phonemes.clear()
        if phonemes:
            lib.espeak_SetSynthCallback(_collect_with_phonemes)
        if lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise ValueError(f"espeak: voice {voice!r} ({name}) was rejected by espeak-ng")
        lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        if pitch_range is not None:
            lib.espeak_SetParameter(_PARAM_RANGE, pitch_range, 0)
        status = lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak: espeak_Synth failed with status {status} for {text!r}")
        lib.espeak_Synchronize()
        samples = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
        events = list(_phonemes)
        _chunks.clear()
        _phonemes.clear()
    if samples.size == 0:
        raise ValueError(f"espeak: {text!r} with voice {voice!r} produced no audio")
    return samples.astype(np.float32) / 32768.0, sample_rate, events


def synthesize(text: str, *, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    """Speak ``text`` with ``voice`` (``accent`` or ``accent+variant``, e.g. ``en-gb-scotland+m3``) at ``rate``
    words per minute (:data:`RATE_RANGE`) and base pitch ``pitch`` (:data:`PITCH_RANGE`).

    Returns the mono waveform as float32 (T,) in [-1, 1) and its sample rate in Hz (22050 for espeak-ng).
    Leading and trailing silence is kept as espeak makes it. Identical arguments give identical samples.
    """
    wave, sample_rate, _ = _synthesize(text, voice, rate, pitch, None, phonemes=False)
    return wave, sample_rate


@dataclass(frozen=True)
class PhonemeEvent:
    """One phoneme of a synthesis: espeak's ASCII mnemonic (``E``, ``aI``, ``p``; ``_`` and ``_:`` are pauses)
    and the index of the waveform sample where it starts."""

    phoneme: str
    start: int


def synthesize_with_phonemes(text: str, *, voice: str, rate: int, pitch: int, pitch_range: int | None = None
                             ) -> tuple[np.ndarray, int, list[PhonemeEvent]]:
    """:func:`synthesize` that also returns the phoneme timing espeak-ng reports while it speaks.

    ``pitch_range``: espeak's intonation range (:data:`PITCH_RANGE`; None keeps the voice's own, 50 for most):
    0 is a monotone, higher values swing the pitch further. Returns (waveform, sample rate, events in order
    of ``start``). A phoneme lasts until the next event's start; the last one is usually the closing pause
    ``_:``. With ``pitch_range`` None the waveform equals :func:`synthesize`'s for the same arguments.
    """
    wave, sample_rate, events = _synthesize(text, voice, rate, pitch, pitch_range, phonemes=True)
    return wave, sample_rate, sorted((PhonemeEvent(name, start) for name, start in events),
                                     key=lambda event: event.start)
