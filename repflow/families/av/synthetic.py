"""Synthetic audio-visual speech: espeak-ng speaks a few words, a drawn face mouths them in sync.

A clip (:func:`make_clip`) is T frames at ``fps`` (default 30 frames at 25 fps = 1.2 s, MDVAE's sequence
length; 25 fps makes a frame exactly 640 samples at 16 kHz) of a 64x64 face and the matching 16 kHz audio:

- espeak-ng synthesises the text with the speaker's voice, shifted by the emotion
  (:meth:`Speaker.voice_settings`), and reports when each phoneme starts; the 22.05 kHz waveform is
  resampled with torchaudio and placed ``onset`` seconds into an otherwise silent clip (cut at the clip end);
- every frame shows the viseme of the phoneme sounding at the frame's centre time (:func:`viseme_of`), a
  closed mouth before, between (pauses) and after the words;
- optional blink: the eyes close around ``blink_at`` seconds, a visual-only dynamic that has no counterpart
  in the sound (as pitch movement is audio-only);
- identity (face, voice) and emotion (brows, mouth curve, pitch, rate, intonation) are the same in every frame.

:func:`make_corpus` draws the words, emotions (balanced per speaker), onsets and blinks of many clips from one
seed; each clip from its own generator seeded by ``(seed, speaker, clip index)``, so a clip does not depend
on which other clips are made.
"""
from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from repflow.families.av.clips import (CLIP_FRAMES, FACE_SIZE, FPS, N_FFT, SAMPLE_RATE, AVClip, clip_samples,
                                       frame_spectra)
from repflow.families.av.emotions import EMOTIONS, Emotion, emotion as as_emotion
from repflow.families.av.faces import render_face
from repflow.families.av.speakers import Speaker, make_speakers
from repflow.families.av.visemes import SILENCE, viseme_of
from repflow.media.speech import PhonemeEvent, synthesize_with_phonemes
from repflow.progress import progress

__all__ = ["Speech", "speak", "make_clip", "make_corpus", "frame_visemes", "eyes_open_per_frame", "DIGIT_WORDS",
           "BLINK_SECONDS"]

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
BLINK_SECONDS = 0.16
"""How long a blink keeps the eyes (at least half) closed; the middle half of it they are shut."""


@dataclass
class Speech:
    """Spoken text: float32 (N,) ``wave`` at ``sample_rate`` Hz and its ``phonemes`` (starts in samples of
    ``wave``), as spoken with espeak ``settings``."""

    text: str
    wave: np.ndarray
    sample_rate: int
    phonemes: list[PhonemeEvent]
    settings: dict[str, int | str]

    @property
    def seconds(self) -> float:
        return len(self.wave) / self.sample_rate


def speak(text: str, speaker: Speaker, emotion: int | str | Emotion, *, sample_rate: int = SAMPLE_RATE) -> Speech:
    """``text`` in ``speaker``'s voice with ``emotion``, resampled from espeak's rate to ``sample_rate`` Hz
    (torchaudio's sinc resampler); phoneme starts are moved to the new rate."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 48000:
        raise ValueError(f"sample_rate {sample_rate!r} must be an integer in 8000..48000 (Hz)")
    settings = speaker.voice_settings(emotion)
    wave, native_rate, events = synthesize_with_phonemes(text, **settings)
    if native_rate != sample_rate:
        wave = AF.resample(torch.from_numpy(wave), native_rate, sample_rate).numpy()
        events = [PhonemeEvent(e.phoneme, int(round(e.start * sample_rate / native_rate))) for e in events]
    return Speech(text, wave.astype(np.float32), sample_rate, events, settings)


def frame_visemes(speech: Speech, onset_samples: int, n_frames: int, fps: float) -> np.ndarray:
    """int64 (n_frames,) viseme id per frame: that of the phoneme sounding at the frame's centre when
    ``speech`` starts ``onset_samples`` into the clip, :data:`SILENCE` outside the speech."""
    centres = (np.arange(n_frames) + 0.5) * speech.sample_rate / fps - onset_samples
    starts = np.array([e.start for e in speech.phonemes], dtype=np.float64)
    ids = np.array([viseme_of(e.phoneme) for e in speech.phonemes] or [SILENCE], dtype=np.int64)
    active = np.searchsorted(starts, centres, side="right") - 1
    inside = (active >= 0) & (centres < len(speech.wave))
    return np.where(inside, ids[np.clip(active, 0, None)], SILENCE).astype(np.int64)


def eyes_open_per_frame(n_frames: int, fps: float, blink_at: float | None) -> np.ndarray:
    """float (n_frames,) eye openness: 1 everywhere without a blink; with one starting at ``blink_at``
    seconds, 0 in the middle half of :data:`BLINK_SECONDS` and 0.5 in its outer quarters (frame centres)."""
    open_ = np.ones(n_frames)
    if blink_at is None:
        return open_
    distance = np.abs((np.arange(n_frames) + 0.5) / fps - (blink_at + BLINK_SECONDS / 2))
    open_[distance < BLINK_SECONDS / 2] = 0.5
    open_[distance < BLINK_SECONDS / 4] = 0.0
    return open_


def _check_clip_args(fps: float, n_frames: int, size: int, onset: float, sample_rate: int, n_fft: int,
                     onset_key: str = "onset") -> None:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 1 <= fps <= 120:
        raise ValueError(f"fps {fps!r} must be a number in 1..120")
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames {n_frames!r} must be an integer >= 1")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size {size!r} must be an integer >= 16 (pixels)")
    if not 0 <= onset < n_frames / fps:
        raise ValueError(f"{onset_key} {onset!r} must be in [0, {n_frames / fps:g}) seconds (the clip's length)")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 48000:
        raise ValueError(f"sample_rate {sample_rate!r} must be an integer in 8000..48000 (Hz)")
    if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < 16:
        raise ValueError(f"n_fft {n_fft!r} must be an integer >= 16 (samples)")


def _assemble(speech: Speech, speaker: Speaker, mood: Emotion, *, fps: float, n_frames: int, size: int,
              onset: float, blink_at: float | None, n_fft: int, name: str) -> AVClip:
    onset_samples = int(round(onset * speech.sample_rate))
    audio = np.zeros(clip_samples(n_frames, fps, speech.sample_rate), dtype=np.float32)
    kept = speech.wave[:max(0, len(audio) - onset_samples)]
    audio[onset_samples:onset_samples + len(kept)] = kept
    visemes = frame_visemes(speech, onset_samples, n_frames, fps)
    eyes = eyes_open_per_frame(n_frames, fps, blink_at)
    frames = np.stack([render_face(speaker.face, mood, int(v), size, eyes_open=float(e))
                       for v, e in zip(visemes, eyes)])
    return AVClip(frames=frames, audio=audio, spectra=frame_spectra(audio, speech.sample_rate, fps, n_frames,
                                                                   n_fft=n_fft),
                  visemes=visemes, fps=float(fps), sample_rate=speech.sample_rate, speaker=speaker.id,
                  emotion=EMOTIONS.index(mood), text=speech.text, name=name)


def make_clip(text: str, speaker: Speaker, emotion: int | str | Emotion, *, fps: float = FPS,
              n_frames: int = CLIP_FRAMES, sample_rate: int = SAMPLE_RATE, size: int = FACE_SIZE,
              onset: float = 0.1, blink_at: float | None = None, n_fft: int = N_FFT,
              name: str | None = None) -> AVClip:
    """``speaker`` saying ``text`` with ``emotion`` (id, name or :class:`Emotion`): an :class:`AVClip` of
    ``n_frames`` frames of ``size`` x ``size`` at ``fps``, audio at ``sample_rate`` Hz starting ``onset``
    seconds in (speech longer than the clip is cut), spectra with ``n_fft`` (F = n_fft // 2 + 1), a blink at
    ``blink_at`` seconds or none. Same arguments, same bytes."""
    _check_clip_args(fps, n_frames, size, onset, sample_rate, n_fft)
    mood = as_emotion(emotion)
    speech = speak(text, speaker, mood, sample_rate=sample_rate)
    return _assemble(speech, speaker, mood, fps=fps, n_frames=n_frames, size=size, onset=onset,
                     blink_at=blink_at, n_fft=n_fft, name=name or f"speaker{speaker.id}-{mood.name}-{text}")


def make_corpus(n_speakers: int, clips_per_speaker: int, seed: int, *, speaker_ids: Collection[int] | None = None,
                words: Sequence[str] = DIGIT_WORDS, max_words: int = 2, pause_probability: float = 0.25,
                blink_probability: float = 0.4, max_onset: float = 0.25, fps: float = FPS,
                n_frames: int = CLIP_FRAMES, sample_rate: int = SAMPLE_RATE, size: int = FACE_SIZE,
                n_fft: int = N_FFT) -> Iterator[AVClip]:
    """Clips of the speakers :func:`make_speakers(n_speakers, seed) <make_speakers>` (only those in
    ``speaker_ids`` when given, e.g. one split), ``clips_per_speaker`` each, speaker by speaker, with progress.

    Per clip: 1..``max_words`` words drawn from ``words``, joined by a comma (a spoken pause) with
    ``pause_probability``, else by a space; words are dropped from the end until the speech fits in the clip.
    A speaker's emotions are shuffled rounds of all of them (balanced when ``clips_per_speaker`` is a multiple
    of their number, else off by at most one; with one clip each, a random emotion per speaker). The onset is
    uniform in [0, min(``max_onset``, the slack the speech leaves)];
    a blink at a uniform time with ``blink_probability``. Clip k of speaker s is named ``s{s:03d}-c{k:04d}``.
    Arguments are checked when this is called; the clips are made as they are iterated.
    """
    speakers = make_speakers(n_speakers, seed)
    if isinstance(clips_per_speaker, bool) or not isinstance(clips_per_speaker, int) or clips_per_speaker < 1:
        raise ValueError(f"clips_per_speaker {clips_per_speaker!r} must be an integer >= 1")
    if speaker_ids is not None:
        unknown = sorted(set(speaker_ids) - {s.id for s in speakers})
        if unknown:
            raise ValueError(f"speaker_ids {unknown} are not among the {n_speakers} speakers (0..{n_speakers - 1})")
        speakers = [s for s in speakers if s.id in set(speaker_ids)]
    if not words or not all(isinstance(w, str) and w.strip() for w in words):
        raise ValueError(f"words must be non-empty strings, got {list(words)!r}")
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ValueError(f"max_words {max_words!r} must be an integer >= 1")
    for key, p in (("pause_probability", pause_probability), ("blink_probability", blink_probability)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{key} {p!r} must be in [0, 1]")
    _check_clip_args(fps, n_frames, size, max_onset, sample_rate, n_fft, onset_key="max_onset")
    return _corpus(speakers, clips_per_speaker, seed, words=list(words), max_words=max_words,
                   pause_probability=pause_probability, blink_probability=blink_probability, max_onset=max_onset,
                   fps=fps, n_frames=n_frames, sample_rate=sample_rate, size=size, n_fft=n_fft)


def _emotion_order(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` emotion ids in shuffled order: whole shuffled rounds of all emotions, then a random part of one."""
    rounds = -(-n // len(EMOTIONS))
    return rng.permutation(np.concatenate([rng.permutation(len(EMOTIONS)) for _ in range(rounds)])[:n])


def _corpus(speakers: list[Speaker], clips_per_speaker: int, seed: int, *, words: list[str], max_words: int,
            pause_probability: float, blink_probability: float, max_onset: float, fps: float, n_frames: int,
            sample_rate: int, size: int, n_fft: int) -> Iterator[AVClip]:
    seconds = n_frames / fps
    jobs = [(speaker, k) for speaker in speakers for k in range(clips_per_speaker)]
    orders = {s.id: _emotion_order(np.random.default_rng([seed, 1, s.id]), clips_per_speaker) for s in speakers}
    for speaker, k in progress(jobs, desc="av clips", unit="clip"):
        rng = np.random.default_rng([seed, 2, speaker.id, k])
        mood = EMOTIONS[int(orders[speaker.id][k])]
        chosen = [str(w) for w in rng.choice(words, size=int(rng.integers(1, max_words + 1)))]
        separator = ", " if rng.random() < pause_probability else " "
        onset_draw, blink_draw, blink_time = rng.random(), rng.random(), rng.random()
        for count in range(len(chosen), 0, -1):
            speech = speak(separator.join(chosen[:count]), speaker, mood, sample_rate=sample_rate)
            if speech.seconds < seconds or count == 1:
                break
        onset = onset_draw * max(0.0, min(max_onset, seconds - speech.seconds))
        blink_at = blink_time * (seconds - BLINK_SECONDS) if blink_draw < blink_probability else None
        yield _assemble(speech, speaker, mood, fps=fps, n_frames=n_frames, size=size, onset=onset,
                        blink_at=blink_at, n_fft=n_fft, name=f"s{speaker.id:03d}-c{k:04d}")
