"""One audio-visual clip, synthetic or read from a file, and the audio features aligned to its video frames.

Alignment: video frame i shows the time span [i/fps, (i+1)/fps). Its spectrum row (:func:`frame_spectra`)
averages the power spectra of ``windows_per_frame`` Hann windows whose centres are spread evenly over exactly
that span, so row i describes the sound heard while frame i is on screen, for any fps (29.97 included, where
a frame is not a whole number of samples). The waveform holds ``round(T * sample_rate / fps)`` samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AVClip", "frame_spectra", "clip_samples", "SPECTRUM_FLOOR", "N_FFT", "WINDOWS_PER_FRAME",
           "CLIP_FRAMES", "FPS", "SAMPLE_RATE", "FACE_SIZE"]

CLIP_FRAMES = 30
"""Default clip length T in frames: 1.2 s at 25 fps, MDVAE's training sequence length (30 frames)."""
FPS = 25.0
"""Default frame rate of synthetic clips; at 16 kHz a frame is exactly 640 samples."""
SAMPLE_RATE = 16000
"""Default audio rate in Hz (MDVAE's speech rate)."""
FACE_SIZE = 64
"""Default frame side in pixels (MDVAE's 64x64 face crops)."""

N_FFT = 512
"""Default FFT (and Hann window) length in samples: 32 ms at 16 kHz, so F = 257 bins of 31.25 Hz."""
WINDOWS_PER_FRAME = 4
"""Default number of windows averaged per video frame: at 25 fps and 16 kHz one every 10 ms, so the 32 ms
windows overlap and cover the whole 40 ms frame."""
SPECTRUM_FLOOR = 1e-10
"""Added to every power value, so spectra are strictly positive (their log and an Itakura-Saito divergence,
MDVAE's audio loss, stay finite on digital silence)."""


@dataclass
class AVClip:
    """T video frames and the sound that goes with them.

    - ``frames``: uint8 (T, S, S, 3) RGB face frames at ``fps`` frames per second;
    - ``audio``: float32 (round(T * sample_rate / fps),) mono waveform (full scale 1.0) at ``sample_rate`` Hz,
      sample 0 at the start of frame 0;
    - ``spectra``: float32 (T, F) power spectra aligned to the frames (:func:`frame_spectra`; F = n_fft/2 + 1,
      bin k at k * sample_rate / n_fft Hz);
    - ``visemes``: int64 (T,) viseme id shown in each frame (:data:`~repflow.families.av.visemes.VISEMES`),
      -1 where unknown (a user's clip);
    - ``speaker``, ``emotion``: static ids (-1 unknown); ``text``: the words spoken ('' unknown);
    - ``name``: what the clip is (its synthesis settings or the file it came from).
    """

    frames: np.ndarray
    audio: np.ndarray
    spectra: np.ndarray
    visemes: np.ndarray
    fps: float
    sample_rate: int
    speaker: int
    emotion: int
    text: str
    name: str

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def clip_samples(n_frames: int, fps: float, sample_rate: int) -> int:
    """Waveform length of a clip of ``n_frames`` frames: ``round(n_frames * sample_rate / fps)``."""
    return int(round(n_frames * sample_rate / fps))


def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float64)


def frame_spectra(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int, *, n_fft: int = N_FFT,
                  windows_per_frame: int = WINDOWS_PER_FRAME) -> np.ndarray:
    """float32 (n_frames, n_fft // 2 + 1) power spectra of mono ``audio`` (N,), row i for video frame i.

    Each row is the mean over ``windows_per_frame`` periodic-Hann windows of ``n_fft`` samples centred at
    ``(i + (k + 0.5) / windows_per_frame) * sample_rate / fps`` of ``|rfft(window * x)|² / sum(window²)``
    (a periodogram: a full-scale sine's peak bin reads n_fft / 6), plus :data:`SPECTRUM_FLOOR`. Audio
    beyond either end counts as silence.
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono (N,), got shape {audio.shape}")
    for name, value in (("n_frames", n_frames), ("n_fft", n_fft), ("windows_per_frame", windows_per_frame)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} {value!r} must be an integer >= 1")
    if not fps > 0 or not sample_rate > 0:
        raise ValueError(f"fps {fps!r} and sample_rate {sample_rate!r} must be positive")
    hop = sample_rate / fps
    centres = (np.arange(n_frames * windows_per_frame) + 0.5) * hop / windows_per_frame
    starts = np.floor(centres).astype(np.int64) - n_fft // 2
    right = max(0, int(starts[-1]) + n_fft - len(audio))
    padded = np.pad(audio, (n_fft, right + n_fft))
    window = _hann(n_fft)
    segments = padded[starts[:, None] + n_fft + np.arange(n_fft)] * window
    power = np.abs(np.fft.rfft(segments, axis=1)) ** 2 / np.sum(window ** 2)
    per_frame = power.reshape(n_frames, windows_per_frame, -1).mean(axis=1)
    return (per_frame + SPECTRUM_FLOOR).astype(np.float32)
