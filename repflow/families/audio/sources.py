"""Readers for the audio family's sources. Each returns :class:`AudioClips`: mono float32 clips at one sample
rate, with one or more label tasks; nothing is downloaded.

Sources (:data:`AUDIO_SOURCES`):
- ``espeak``: spoken words synthesised in-process by espeak-ng (:mod:`repflow.media.speech`), each
  clip with a random English accent, voice variant, rate and pitch drawn from ``seed``. Labels: ``word``,
  ``voice`` (the variant), ``accent``, ``pitch_band`` (which equal-width band of espeak's 0..99 pitch
  parameter the clip's pitch falls in).
- ``asterisk``: the real recorded telephone prompts of Debian's ``asterisk-core-sounds-<lang>-wav`` packages
  (one professional speaker per language, 8 kHz). Labels: ``word`` (the prompt, e.g. ``digits/7``) and
  ``language`` (e.g. ``en``).
- ``audiofolder``: ``path/<class>/<file>.{wav,flac,ogg}``. Label: ``label`` (the class folder's name).

Every clip is decoded with soundfile, averaged to mono, cut to ``max_seconds`` (the start is kept), resampled
to ``sample_rate`` with :func:`torchaudio.functional.resample`, and scaled down when its peak exceeds 1 (float
files and resampling overshoot may). Files are visited in sorted order, so a folder always gives the same
clips in the same order; a file that does not decode (or has no samples) is skipped and listed in ``skipped``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

import repflow.media.speech as speech  # a module import: the code closure lists the module, not the package
from repflow.progress import progress
from repflow.sources import SourceError, folder_files

__all__ = ["AudioClips", "SourceError", "read_audio_source", "AUDIO_SOURCES", "SOURCE_LABELS", "DEFAULT_WORDS",
           "DEFAULT_PATHS", "ESPEAK_VARIANTS", "ESPEAK_RATES", "SAMPLE_RATE_RANGE", "AUDIO_SUFFIXES",
           "pitch_band_names", "AUTO_LABEL", "source_label", "stratify_label", "attack_task"]

AUDIO_SOURCES = ("espeak", "asterisk", "audiofolder")
SOURCE_LABELS = {"espeak": ("word", "voice", "accent", "pitch_band"), "asterisk": ("word", "language"),
                 "audiofolder": ("label",)}
AUTO_LABEL = "auto"
"""The value of a label-valued param that means "the source's first label" (:func:`source_label`)."""
DEFAULT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DEFAULT_PATHS = {"asterisk": Path("/usr/share/asterisk/sounds"), "audiofolder": Path("data/raw/audio")}
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5")
"""The classic male and female variants: voiced speakers whose F0 follows the pitch parameter (whisper and
the robot/novelty variants of ``espeak-ng-data/voices/!v`` are left out)."""
ESPEAK_RATES = (120, 220)
"""Speaking rates drawn for espeak clips, words per minute, inclusive."""
SAMPLE_RATE_RANGE = (8000, 48000)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
ASTERISK_INSTALL = ("apt-get install asterisk-core-sounds-en-wav (and -es-wav, -fr-wav, -it-wav, -ru-wav "
                    "for more languages)")


@dataclass
class AudioClips:
    """Clips of one source, all at ``sample_rate`` Hz.

    ``waveforms[i]`` is float32 mono (T_i,) with peak within [-1, 1]; ``labels[task][i]`` is clip i's label
    for each task of :data:`SOURCE_LABELS`; ``names[i]`` identifies clip i (a path relative to the source
    folder, or the synthesis settings); ``skipped`` lists ``{"file", "error"}`` for files that did not decode.
    """

    waveforms: list[np.ndarray]
    sample_rate: int
    labels: dict[str, list[str]]
    names: list[str]
    origin: str
    skipped: list[dict[str, str]] = field(default_factory=list)


def source_label(value: str | None, source: str) -> str | None:
    """A label-valued param as the stages use it: ``'auto'`` is the source's first label (its main task:
    espeak and asterisk 'word', audiofolder 'label'), so a default follows the source's labels."""
    return SOURCE_LABELS[source][0] if value == AUTO_LABEL else value


def stratify_label(params) -> str:
    """``audio.prep.stratify`` with 'auto' resolved for the source."""
    return source_label(params.audio.prep.stratify, params.audio.prep.source)


def attack_task(params) -> str | None:
    """``audio.evaluate.attack_task`` with 'auto' resolved for the source (None: no attack)."""
    return source_label(params.audio.evaluate.attack_task, params.audio.prep.source)


def pitch_band_names(bands: int) -> list[str]:
    """Names of ``bands`` equal-width bands of espeak's pitch parameter, lowest first."""
    return ["low", "mid", "high"] if bands == 3 else [f"band{i}" for i in range(bands)]


def _pitch_band(pitch: int, bands: int) -> int:
    span = speech.PITCH_RANGE[1] - speech.PITCH_RANGE[0] + 1
    return min((pitch - speech.PITCH_RANGE[0]) * bands // span, bands - 1)


def _to_rate(mono: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate != to_rate:
        mono = AF.resample(torch.from_numpy(np.ascontiguousarray(mono)), from_rate, to_rate).numpy()
    peak = float(np.abs(mono).max()) if mono.size else 0.0
    return (mono / peak if peak > 1.0 else mono).astype(np.float32, copy=False)


def _decode(path: Path, sample_rate: int, max_seconds: float) -> np.ndarray:
    """One file as float32 mono at ``sample_rate``, at most ``max_seconds`` long; ValueError if it has no
    usable samples (soundfile raises RuntimeError for what it cannot parse)."""
    with soundfile.SoundFile(path) as f:
        file_rate = f.samplerate
        data = f.read(frames=max(1, round(max_seconds * file_rate)), dtype="float32", always_2d=True)
    if data.size == 0:
        raise ValueError("no samples")
    if not np.isfinite(data).all():
        raise ValueError("non-finite samples")
    return _to_rate(data.mean(axis=1), file_rate, sample_rate)


def _read_files(files: list[tuple[Path, dict[str, str]]], root: Path, *, source: str, sample_rate: int,
                max_seconds: float, walk_skipped: list[dict[str, str]] | None = None) -> AudioClips:
    """Decode ``(file, labels)`` pairs in order; the undecodable are skipped and listed after what the folder
    walk skipped (``walk_skipped``, :func:`repflow.sources.folder_files`)."""
    waveforms, names = [], []
    skipped = [{"file": s["file"], "error": s["reason"]} for s in walk_skipped or []]
    labels: dict[str, list[str]] = {task: [] for task in SOURCE_LABELS[source]}
    for path, clip_labels in progress(files, desc=f"{source}: decoding", unit="file"):
        try:
            wave = _decode(path, sample_rate, max_seconds)
        except (RuntimeError, ValueError, OSError) as exc:
            skipped.append({"file": str(path), "error": f"{type(exc).__name__}: {exc}"})
            continue
        waveforms.append(wave)
        names.append(path.relative_to(root).as_posix())
        for task in labels:
            labels[task].append(clip_labels[task])
    if not waveforms:
        first = f"; first error: {skipped[0]['file']}: {skipped[0]['error']}" if skipped else ""
        raise SourceError(f"{source}: none of the {len(files)} audio files under {root} could be decoded{first}")
    return AudioClips(waveforms, sample_rate, labels, names, origin=str(root), skipped=skipped)


def _class_files(folder: Path, suffixes=AUDIO_SUFFIXES) -> tuple[dict[str, list[Path]], list[dict[str, str]]]:
    """``{first-level sub-folder: its audio files}`` of ``folder`` by the shared walk (links that loop or leave
    the folder skipped, a file reached twice read once), and what the walk skipped."""
    walk = folder_files(folder, suffixes)
    classes: dict[str, list[Path]] = {}
    for path in walk.files:
        parts = path.relative_to(folder).parts
        if len(parts) > 1:
            classes.setdefault(parts[0], []).append(path)
    return classes, walk.skipped


def read_audiofolder(folder: Path, *, sample_rate: int, max_seconds: float) -> AudioClips:
    if not folder.is_dir():
        raise SourceError(f"audiofolder: folder {folder} does not exist (expected <folder>/<class>/<file>"
                          f".{{{','.join(s[1:] for s in AUDIO_SUFFIXES)}}}; set the source path)")
    class_dirs = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise SourceError(f"audiofolder: {folder} has no class sub-folders (expected <folder>/<class>/<file>)")
    classes, walk_skipped = _class_files(folder)
    files = [(p, {"label": label}) for label, paths in sorted(classes.items()) for p in paths]
    if not files:
        raise SourceError(f"audiofolder: no {'/'.join(AUDIO_SUFFIXES)} files in the class folders of {folder} "
                          f"({', '.join(class_dirs[:5])}{', ...' if len(class_dirs) > 5 else ''})")
    return _read_files(files, folder, source="audiofolder", sample_rate=sample_rate, max_seconds=max_seconds,
                       walk_skipped=walk_skipped)


def read_asterisk(folder: Path, *, sample_rate: int, max_seconds: float) -> AudioClips:
    """Language folders such as ``en_US_f_Allison``; the aliases Debian adds as symlinks (``en``, ``en_US``)
    are not followed, so each prompt is read once."""
    if not folder.is_dir():
        raise SourceError(f"asterisk: folder {folder} does not exist ({ASTERISK_INSTALL})")
    classes, _ = _class_files(folder, (".wav",))  # the alias links reach voice folders a second time: skipped
    files = [(p, {"word": p.relative_to(folder / voice).with_suffix("").as_posix(), "language": voice.split("_")[0]})
             for voice, paths in sorted(classes.items()) for p in paths]
    if not files:
        raise SourceError(f"asterisk: no language folders with .wav prompts under {folder} "
                          f"(expected e.g. en_US_f_Allison/digits/7.wav; {ASTERISK_INSTALL})")
    return _read_files(files, folder, source="asterisk", sample_rate=sample_rate, max_seconds=max_seconds)


def read_espeak(words: Sequence[str], *, sample_rate: int, seed: int, clips_per_word: int, pitch_bands: int,
                max_seconds: float) -> AudioClips:
    """``clips_per_word`` clips of each word in order, each with an accent of
    :data:`repflow.media.speech.ENGLISH_ACCENTS`, a variant of :data:`ESPEAK_VARIANTS`, a rate in
    :data:`ESPEAK_RATES` and a pitch in 0..99, all uniform."""
    rng = np.random.default_rng(seed)
    n = len(words) * clips_per_word
    accents = rng.integers(len(speech.ENGLISH_ACCENTS), size=n)
    variants = rng.integers(len(ESPEAK_VARIANTS), size=n)
    rates = rng.integers(ESPEAK_RATES[0], ESPEAK_RATES[1] + 1, size=n)
    pitches = rng.integers(speech.PITCH_RANGE[0], speech.PITCH_RANGE[1] + 1, size=n)
    band_names = pitch_band_names(pitch_bands)
    waveforms, names = [], []
    labels: dict[str, list[str]] = {task: [] for task in SOURCE_LABELS["espeak"]}
    for i in progress(range(n), desc="espeak: synthesising", unit="clip"):
        word = words[i // clips_per_word]
        accent, variant = speech.ENGLISH_ACCENTS[accents[i]], ESPEAK_VARIANTS[variants[i]]
        rate, pitch = int(rates[i]), int(pitches[i])
        wave, native_rate = speech.synthesize(word, voice=f"{accent}+{variant}", rate=rate, pitch=pitch)
        waveforms.append(_to_rate(wave[:round(max_seconds * native_rate)], native_rate, sample_rate))
        names.append(f"{i:05d}_{word}_{accent}+{variant}_r{rate}_p{pitch}")
        for task, value in (("word", word), ("voice", variant), ("accent", accent),
                            ("pitch_band", band_names[_pitch_band(pitch, pitch_bands)])):
            labels[task].append(value)
    return AudioClips(waveforms, sample_rate, labels, names,
                      origin=f"espeak-ng {speech.espeak_version()} (espeakng-loader), seed {seed}")


def _check(source: str, sample_rate: int, words: Sequence[str], clips_per_word: int, pitch_bands: int,
           max_seconds: float, path: str | None) -> None:
    if source not in AUDIO_SOURCES:
        raise SourceError(f"unknown audio source {source!r}; allowed: {', '.join(AUDIO_SOURCES)}")
    lo, hi = SAMPLE_RATE_RANGE
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not lo <= sample_rate <= hi:
        raise ValueError(f"sample_rate {sample_rate!r} must be an integer in {lo}..{hi} Hz")
    if not isinstance(max_seconds, (int, float)) or not 0 < max_seconds < float("inf"):
        raise ValueError(f"max_seconds {max_seconds!r} must be a positive number of seconds")
    if source != "espeak":
        return
    if path is not None:
        raise SourceError(f"espeak: synthesises its clips and reads no folder, got path {path!r}")
    if isinstance(words, str) or not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise ValueError(f"espeak: words must be a non-empty list of non-empty strings, got {words!r}")
    if len(set(words)) != len(words):
        raise ValueError(f"espeak: words repeat ({sorted(w for w in set(words) if list(words).count(w) > 1)})")
    if isinstance(clips_per_word, bool) or not isinstance(clips_per_word, int) or clips_per_word < 1:
        raise ValueError(f"espeak: clips_per_word {clips_per_word!r} must be an integer >= 1")
    span = speech.PITCH_RANGE[1] - speech.PITCH_RANGE[0] + 1
    if isinstance(pitch_bands, bool) or not isinstance(pitch_bands, int) or not 1 <= pitch_bands <= span:
        raise ValueError(f"espeak: pitch_bands {pitch_bands!r} must be an integer in 1..{span}")


def read_audio_source(source: str, *, sample_rate: int, seed: int, path: str | None = None,
                      words: Sequence[str] = DEFAULT_WORDS, clips_per_word: int = 100, pitch_bands: int = 3,
                      max_seconds: float = 2.0) -> AudioClips:
    """Read (or synthesise) ``source`` at ``sample_rate`` Hz (8000..48000), every clip at most ``max_seconds``.

    ``seed``, ``words``, ``clips_per_word`` and ``pitch_bands`` concern ``espeak`` only; ``path`` is the folder
    of ``asterisk`` (default :data:`DEFAULT_PATHS`) and ``audiofolder``. Arguments are checked before any work.
    """
    _check(source, sample_rate, words, clips_per_word, pitch_bands, max_seconds, path)
    sample_rate = int(sample_rate)
    if source == "espeak":
        return read_espeak(list(words), sample_rate=sample_rate, seed=seed, clips_per_word=clips_per_word,
                           pitch_bands=pitch_bands, max_seconds=max_seconds)
    folder = Path(path) if path is not None else DEFAULT_PATHS[source]
    reader = read_asterisk if source == "asterisk" else read_audiofolder
    return reader(folder, sample_rate=sample_rate, max_seconds=max_seconds)
