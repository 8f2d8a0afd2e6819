"""Audio data path throughput: the audio family's shard → log-mel reader against a per-clip librosa loader.

The same synthetic clips (1 s at 16 kHz: sines, chirps and noise bursts at several pitches; not speech)
are written once as a prep-like shard folder (16-bit FLAC members, the audio prep stage's layout) and
once as one .flac file per clip. Every arm produces the same normalised BYOL-A log-mels (64 mel bins x 96
frames from the centre 0.95 s of each clip), one torch / BLAS thread each, arms interleaved within each
repeat so machine load hits all of them alike:

- ours: ``load_audio_split`` (sha256-verify the folder, decode the shards, batched torchaudio, normalise);
- ours, features only: ``batched_logmel`` on the already decoded waveforms (splits decode from feature time);
- librosa: a Dataset that reads one file with soundfile, centre-fixes its length, calls
  ``librosa.feature.melspectrogram`` with the same settings, logs and normalises, behind a DataLoader
  (batch 256, no workers), as a typical librosa loader does;
- librosa, mel basis cached: the same loader calling ``librosa.stft`` and a precomputed
  ``librosa.filters.mel`` matrix, a tuned librosa loader.

Agreement: ours and librosa's normalised log-mels for every clip, compared as max |Δ| and as the relative
error of the mel power (+ eps) they encode. librosa is a benchmark-only package (``make bench`` installs it).

    python -m benchmarks.audio_loading [--clips 2000] [--repeats 3]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("REPFLOW_PROGRESS", "0")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import write_results  # noqa: E402
from repflow.families.audio.data import load_audio_split  # noqa: E402
from repflow.families.audio.features import (LOG_EPS, MelSettings, batched_logmel, fix_length,  # noqa: E402
                                             normalisation_stats, pcm16)
from repflow.manifest import staged_output  # noqa: E402
from repflow.shards import write_split  # noqa: E402

TASKS = {"shape": ["sine", "chirp", "noise"], "pitch": ["low", "mid", "high"]}
PITCH_HZ = {"low": 220.0, "mid": 880.0, "high": 3000.0}


def synthetic_clip(i: int, seconds: float, rate: int) -> tuple[np.ndarray, dict]:
    """Clip ``i`` (seeded by ``i``): a sine, chirp or amplitude-modulated noise burst at one of three pitches,
    with a 50-300 ms silent lead-in so that the centre crop sees onsets at various places."""
    g = np.random.default_rng(i)
    shape, pitch = TASKS["shape"][i % 3], TASKS["pitch"][(i // 3) % 3]
    t = np.arange(int(seconds * rate)) / rate
    f0 = PITCH_HZ[pitch] * g.uniform(0.9, 1.1)
    if shape == "sine":
        wave = np.sin(2 * np.pi * f0 * t)
    elif shape == "chirp":
        wave = np.sin(2 * np.pi * f0 * (1 + 0.5 * t) * t)
    else:
        wave = g.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * f0 / 50 * t))
    wave = wave * (t > g.uniform(0.05, 0.3)) + 0.003 * g.standard_normal(t.size)
    wave = 0.6 * wave / np.abs(wave).max()
    return wave.astype(np.float32), {"labels": {"shape": shape, "pitch": pitch}, "name": f"clip{i:05d}"}


def write_data(root: Path, clips: int, seconds: float, settings: MelSettings) -> tuple[Path, list[tuple[Path, int]]]:
    """The shard folder (one train split, prep's layout and meta) and the same clips as .flac files."""
    items = [synthetic_clip(i, seconds, settings.sample_rate) for i in range(clips)]
    fixed = torch.stack([fix_length(torch.from_numpy(w), settings.clip_samples) for w, _ in items])
    meta = {"sample_rate": settings.sample_rate, "tasks": TASKS, "features": settings.to_dict(),
            "norm": normalisation_stats(batched_logmel(pcm16(fixed), settings)), "splits": {}}
    members = {"flac": {"type": "flac", "sample_rate": settings.sample_rate}, "json": "json"}
    with staged_output(root / "shards", stage="prep", meta=meta) as out:
        meta["splits"]["train"] = write_split(out, "train", ({"flac": w, "json": info} for w, info in items),
                                              members, shard_size=1000)
    files = []
    (root / "flac").mkdir()
    for wave, info in items:
        path = root / "flac" / f"{info['name']}.flac"
        soundfile.write(path, wave, settings.sample_rate, format="FLAC", subtype="PCM_16")
        files.append((path, TASKS["shape"].index(info["labels"]["shape"])))
    return root / "shards", files


class LibrosaClips(torch.utils.data.Dataset):
    """One .flac per item → normalised log-mel (1, n_mels, frames) computed with librosa, and its label."""

    def __init__(self, files: list[tuple[Path, int]], settings: MelSettings, stats: dict, cached_basis: bool):
        self.files, self.s, self.stats = files, settings, stats
        self.basis = (librosa.filters.mel(sr=settings.sample_rate, n_fft=settings.n_fft, n_mels=settings.n_mels,
                                          fmin=settings.f_min, fmax=settings.f_max, htk=True, norm=None)
                      if cached_basis else None)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path, label = self.files[i]
        s = self.s
        wave, _ = soundfile.read(path, dtype="float32")
        if len(wave) >= s.clip_samples:  # fix_length's rule: centre crop, or symmetric zero-pad
            start = (len(wave) - s.clip_samples) // 2
            wave = wave[start:start + s.clip_samples]
        else:
            left = (s.clip_samples - len(wave)) // 2
            wave = np.pad(wave, (left, s.clip_samples - len(wave) - left))
        if self.basis is None:
            mel = librosa.feature.melspectrogram(y=wave, sr=s.sample_rate, n_fft=s.n_fft, hop_length=s.hop_length,
                                                 win_length=s.win_length, n_mels=s.n_mels, fmin=s.f_min,
                                                 fmax=s.f_max, power=2.0, htk=True, norm=None, center=True,
                                                 pad_mode="reflect")
        else:
            spec = librosa.stft(wave, n_fft=s.n_fft, hop_length=s.hop_length, win_length=s.win_length,
                                center=True, pad_mode="reflect")
            mel = self.basis @ (spec.real ** 2 + spec.imag ** 2)
        logmel = (np.log(mel + LOG_EPS) - self.stats["mean"]) / self.stats["std"]
        return torch.from_numpy(logmel.astype(np.float32))[None], label


def librosa_loader(files, settings, stats, cached_basis: bool):
    def run() -> torch.Tensor:
        loader = torch.utils.data.DataLoader(LibrosaClips(files, settings, stats, cached_basis), batch_size=256,
                                             num_workers=0)
        return torch.cat([x for x, _ in loader])
    return run


def _ratios(arm: list[float], baseline: list[float]) -> tuple[float, float, float]:
    """Median, min and max over repeats of arm / baseline within the same repeat (paired: both ran back to
    back, so a busy spell on the shared machine slows both)."""
    paired = [a / b for a, b in zip(arm, baseline)]
    return statistics.median(paired), min(paired), max(paired)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    settings = MelSettings()
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="repflow-bench-audio-") as tmp:
        folder, files = write_data(Path(tmp), args.clips, args.seconds, settings)
        ours_split = load_audio_split(folder, "train")
        stats = ours_split.stats
        arms = {
            "ours: load_audio_split (verify + decode shards + batched torchaudio log-mel + normalise)":
                lambda: load_audio_split(folder, "train").logmel,
            "ours, features only: batched_logmel on decoded waveforms":
                lambda: batched_logmel(ours_split.waveforms, settings, stats=stats),
            "librosa: per-clip soundfile + feature.melspectrogram, DataLoader batch 256":
                librosa_loader(files, settings, stats, cached_basis=False),
            "librosa, mel basis cached: per-clip soundfile + stft + precomputed basis":
                librosa_loader(files, settings, stats, cached_basis=True),
        }
        outputs = {name: fn() for name, fn in arms.items()}  # warm-up, and the features to compare
        rates: dict[str, list[float]] = {name: [] for name in arms}
        for rep in range(args.repeats):
            for name, fn in arms.items():
                t0 = time.perf_counter()
                fn()
                rates[name].append(args.clips / (time.perf_counter() - t0))
                print(f"repeat {rep + 1}: {name}: {rates[name][-1]:,.0f} clips/s", flush=True)

    names = list(arms)
    ours, librosa_out, tuned = outputs[names[0]], outputs[names[2]], outputs[names[3]]
    diff = (ours - librosa_out).abs()
    rel_power = torch.expm1((ours.double() - librosa_out.double()).abs() * stats["std"])
    agreement = {"max_abs_diff_normalised_logmel": float(diff.max()),
                 "mean_abs_diff_normalised_logmel": float(diff.mean()),
                 "max_rel_err_mel_power_plus_eps": float(rel_power.max()),
                 "max_abs_diff_librosa_cached_vs_librosa": float((tuned - librosa_out).abs().max())}
    base = statistics.median(rates[names[2]])
    rows = [{"arm": name, "clips_per_s_median": statistics.median(r), "min": min(r), "max": max(r),
             "vs_librosa": statistics.median(r) / base,
             "vs_librosa_same_repeat": "{:.2f} ({:.2f}-{:.2f})".format(*_ratios(r, rates[names[2]]))}
            for name, r in rates.items()]
    tol_logmel, tol_power = 1e-3, 1e-3
    ok = (agreement["max_abs_diff_normalised_logmel"] < tol_logmel
          and agreement["max_rel_err_mel_power_plus_eps"] < tol_power)
    notes = [
        f"{args.clips} synthetic clips of {args.seconds:g} s at {settings.sample_rate} Hz (sines, chirps, noise "
        "bursts; not speech), 16-bit FLAC in shards of 1000 and as single files; features: MelSettings() defaults "
        f"{settings.to_dict()}",
        f"clips/s: median, min and max of {args.repeats} repeats after one warm-up pass per arm, arms interleaved "
        "within each repeat; vs_librosa: ratio of medians; vs_librosa_same_repeat: median (min-max) of the ratios "
        "within each repeat; torch and BLAS limited to 1 thread; files just written, so reads hit the page cache",
        "ours includes opening the folder (sha256 of every shard) and keeps the fixed-length waveforms too",
        f"agreement of ours with librosa.feature.melspectrogram over all {args.clips} clips x 64 x 96 bins: "
        f"max |Δ normalised log-mel| = {agreement['max_abs_diff_normalised_logmel']:.2e} (mean "
        f"{agreement['mean_abs_diff_normalised_logmel']:.2e}), max relative error of mel power + eps = "
        f"{agreement['max_rel_err_mel_power_plus_eps']:.2e}; tolerance {tol_logmel:g} and {tol_power:g}: "
        f"{'within' if ok else 'OUTSIDE'}; the cached-basis librosa loader differs from the plain one by at most "
        f"{agreement['max_abs_diff_librosa_cached_vs_librosa']:.2e}",
        f"norm statistics (train split, 16-bit clips): mean {stats['mean']:.4f}, std {stats['std']:.4f}",
        f"machine load (1-min load average, {os.cpu_count()} CPUs): {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; the machine is shared, so the paired ratio is the steadier number",
    ]
    write_results("audio_loading", f"Audio loading: shards → normalised log-mel ({args.clips} clips)", rows, notes,
                  extra={"agreement": {**agreement, "tolerance_logmel": tol_logmel, "tolerance_power": tol_power,
                                       "within_tolerance": ok},
                         "rates": rates, "settings": settings.to_dict(), "stats": stats})
    if not ok:
        raise SystemExit("ours and librosa disagree beyond the stated tolerance")


if __name__ == "__main__":
    main()
