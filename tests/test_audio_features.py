import json
import math

import numpy as np
import pytest
import torch
from torchaudio.transforms import MelSpectrogram

from repflow.families.audio.data import load_audio_split
from repflow.families.audio.features import (LOG_EPS, STD_FLOOR, FeatureError, LogMel, MelSettings, batched_logmel,
                                             check_stats, fix_length, normalisation_stats, normalise, pcm16)
from repflow.manifest import OutputError, staged_output
from repflow.shards import write_split

SMALL = MelSettings(n_fft=512, win_length=400, hop_length=160, n_mels=40, f_max=8000.0, frames=24)


def numpy_logmel(wave: np.ndarray, s: MelSettings, pad_mode: str = "reflect") -> np.ndarray:
    """Independent float64 reference: reflect-padded frames, periodic Hann window centred in the FFT frame,
    |rfft|², HTK triangles without area normalisation, log(mel + eps). (n_mels, frames)."""
    padded = np.pad(wave.astype(np.float64), s.n_fft // 2, mode=pad_mode)
    n = np.arange(s.win_length)
    window = np.zeros(s.n_fft)
    left = (s.n_fft - s.win_length) // 2
    window[left:left + s.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * n / s.win_length)
    count = 1 + (len(padded) - s.n_fft) // s.hop_length
    frames = np.stack([padded[i * s.hop_length:i * s.hop_length + s.n_fft] * window for i in range(count)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, n_fft//2+1)

    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges = 700.0 * (10 ** (np.linspace(mel(s.f_min), mel(s.f_max), s.n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, s.sample_rate / 2, s.n_fft // 2 + 1)
    rising = (freqs[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])
    falling = (edges[None, 2:] - freqs[:, None]) / (edges[2:] - edges[1:-1])
    bank = np.maximum(0.0, np.minimum(rising, falling))  # (n_freqs, n_mels)
    return np.log(power @ bank + LOG_EPS).T


@pytest.mark.slow
def test_clip_samples_is_the_shortest_length_giving_frames():
    for s in (MelSettings(), SMALL, MelSettings(hop_length=100, win_length=800, frames=50)):
        raw = LogMel(s).spectrogram  # the STFT without fix_length
        assert LogMel(s)(torch.zeros(2, 3 * s.clip_samples)).shape == (2, 1, s.n_mels, s.frames)
        assert raw(torch.zeros(s.clip_samples)).shape[-1] == s.frames
        assert raw(torch.zeros(s.clip_samples + s.hop_length - 1)).shape[-1] == s.frames
        assert raw(torch.zeros(s.clip_samples - 1)).shape[-1] == s.frames - 1
    assert MelSettings().clip_samples == 15200  # BYOL-A's 0.95 s at 16 kHz


@pytest.mark.parametrize("settings", [MelSettings(), SMALL], ids=["byol-a", "short-window"])
def test_logmel_matches_a_direct_numpy_computation(settings):
    g = np.random.default_rng(0)
    t = np.arange(settings.clip_samples) / settings.sample_rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 + 3000 * t) * t)
            + 0.05 * g.standard_normal(t.size)).astype(np.float32)
    ours = LogMel(settings)(torch.from_numpy(wave)[None])[0, 0].double().numpy()
    ref = numpy_logmel(wave, settings)
    assert ours.shape == ref.shape == (settings.n_mels, settings.frames)
    # float32 FFT against float64: max |Δ log-mel| < 1e-3, i.e. mel power within 0.1 % in every bin and frame
    assert np.abs(ours - ref).max() < 1e-3
    # the check sees padding: zero padding changes the edge frames far beyond that tolerance
    assert np.abs(numpy_logmel(wave, settings, pad_mode="constant") - ours)[:, 0].max() > 0.05


@pytest.mark.parametrize("settings", [MelSettings(), SMALL, MelSettings(n_mels=7)], ids=["64", "40", "7"])
def test_logmel_bands_hold_every_filterbank_weight(settings):
    module, bank = LogMel(settings), settings.filterbank()
    rebuilt = torch.zeros_like(bank)
    for k, (lo, hi) in enumerate(module.bins):
        band = getattr(module, f"band{k}")
        rebuilt[lo:hi, 16 * k:16 * k + band.shape[1]] = band
    assert torch.equal(rebuilt, bank)


@pytest.mark.parametrize("settings", [MelSettings(), SMALL], ids=["byol-a", "short-window"])
def test_logmel_is_torchaudio_melspectrogram_logged(settings):
    s = settings
    x = 0.3 * torch.randn(5, s.clip_samples, generator=torch.Generator().manual_seed(2))
    mel = MelSpectrogram(sample_rate=s.sample_rate, n_fft=s.n_fft, win_length=s.win_length, hop_length=s.hop_length,
                         f_min=s.f_min, f_max=s.f_max, n_mels=s.n_mels, power=2.0, center=True, pad_mode="reflect",
                         norm=None, mel_scale="htk")(x)
    assert torch.allclose(LogMel(s)(x)[:, 0], torch.log(mel + LOG_EPS), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_logmel_is_differentiable_and_takes_channel_dim():
    x = (0.1 * torch.randn(3, 1, 16000, generator=torch.Generator().manual_seed(0))).requires_grad_()
    out = LogMel()(x)
    assert torch.equal(out, LogMel()(x[:, 0]))
    out.sum().backward()
    crop = (16000 - MelSettings().clip_samples) // 2
    assert torch.isfinite(x.grad).all() and x.grad[..., crop:-crop].abs().min() > 0
    assert (x.grad[..., :crop] == 0).all() and (x.grad[..., -crop:] == 0).all()  # centre crop drops the ends


@pytest.mark.slow
def test_logmel_exports_with_torch_export():
    """The registry stores the waveform → embedding model as a torch.export program (pt2)."""
    module = LogMel(SMALL).eval()
    x = 0.1 * torch.randn(2, SMALL.clip_samples, generator=torch.Generator().manual_seed(3))
    program = torch.export.export(module, (x,))
    other = 0.1 * torch.randn(2, SMALL.clip_samples, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(program.module()(other), module(other), atol=1e-6)


@pytest.mark.parametrize("bad", [torch.zeros(3, 2, 16000), torch.zeros(16000),
                                 torch.zeros(2, 16000, dtype=torch.int16)])
def test_logmel_rejects_other_inputs(bad):
    with pytest.raises(FeatureError, match=r"\(N, T\) or \(N, 1, T\)"):
        LogMel()(bad)


def test_fix_length_centre_crops_and_pads_symmetrically():
    x = torch.arange(1.0, 11.0)
    assert torch.equal(fix_length(x, 6), torch.arange(3.0, 9.0))
    assert torch.equal(fix_length(x, 7), torch.arange(2.0, 9.0))  # odd surplus: one more sample dropped at the end
    assert torch.equal(fix_length(x, 13), torch.cat([torch.zeros(1), x, torch.zeros(2)]))
    assert torch.equal(fix_length(x, 10), x)
    batch = torch.stack([x, -x])
    assert torch.equal(fix_length(batch, 12), torch.nn.functional.pad(batch, (1, 1)))
    with pytest.raises(FeatureError, match="samples = 0"):
        fix_length(x, 0)


@pytest.mark.parametrize("changes, key", [
    ({"sample_rate": 0}, "sample_rate"),
    ({"sample_rate": 16000.0}, "sample_rate"),
    ({"n_fft": 1, "win_length": 1, "hop_length": 1}, "n_fft"),
    ({"win_length": 2048}, "win_length"),
    ({"hop_length": 0}, "hop_length"),
    ({"hop_length": 1025}, "hop_length"),
    ({"n_mels": True}, "n_mels"),
    ({"n_mels": 0}, "n_mels"),
    ({"n_mels": 400}, "n_mels"),
    ({"n_fft": 256, "win_length": 256, "n_mels": 128}, "n_mels"),
    ({"f_min": -1.0}, "f_min"),
    ({"f_min": float("nan")}, "f_min"),
    ({"f_max": 8001.0}, "f_max"),
    ({"f_min": 7800.0}, "f_min"),
    ({"f_max": "7800"}, "f_max"),
    ({"frames": 7}, "frames"),
    ({"hop_length": 16, "frames": 8}, "frames"),
])
def test_validate_names_the_bad_setting(changes, key):
    with pytest.raises(FeatureError, match=rf"MelSettings\.{key} = ") as err:
        MelSettings(**changes)
    assert repr(changes[key]) in str(err.value)


def test_settings_round_trip_through_json_and_reject_unknown_keys():
    s = MelSettings(n_mels=48, f_min=50, frames=64)
    assert isinstance(s.f_min, float)
    assert MelSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(FeatureError, match=r"\['hop', 'mels'\]"):
        MelSettings.from_dict({**s.to_dict(), "hop": 1, "mels": 2})
    with pytest.raises(FeatureError, match=r"MelSettings\.f_max"):
        MelSettings.from_dict({"sample_rate": 8000})


@pytest.mark.slow
def test_batched_logmel_is_logmel_in_any_batch_size():
    x = 0.2 * torch.randn(7, 9000, generator=torch.Generator().manual_seed(1))
    stats = {"mean": -5.0, "std": 4.0}
    whole = normalise(LogMel(SMALL)(x), stats)
    for batch_size in (1, 3, 256):
        assert torch.allclose(batched_logmel(x, SMALL, batch_size=batch_size, stats=stats), whole, atol=1e-5)
    assert not batched_logmel(x.requires_grad_(), SMALL).requires_grad


def test_pcm16_quantises_like_16_bit_storage():
    x = torch.tensor([1.0, -1.0, 0.5, 1e-6, 3e-5, -0.99999])
    assert pcm16(x).tolist() == [32767 / 32768, -1.0, 0.5, 0.0, 1 / 32768, -32768 / 32768]


def test_normalisation_stats_and_normalise():
    x = 3.0 + 2.0 * torch.randn(50, 1, 8, 10, generator=torch.Generator().manual_seed(0))
    stats = normalisation_stats(x, chunk=7)
    std, mean = torch.std_mean(x.double(), unbiased=False)
    assert stats == pytest.approx({"mean": float(mean), "std": float(std)}, rel=1e-9)
    z = normalise(x, stats)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std(unbiased=False)) - 1) < 1e-5
    assert normalisation_stats(torch.full((4, 3), -2.0)) == {"mean": -2.0, "std": STD_FLOOR}
    with pytest.raises(FeatureError, match="NaN or infinite"):
        normalisation_stats(torch.tensor([1.0, math.inf]))
    for bad, word in [({"mean": 0.0}, "keys"), ({"mean": 0.0, "std": 0.0}, "std = 0.0"),
                      ({"mean": math.nan, "std": 1.0}, "mean = nan")]:
        with pytest.raises(FeatureError, match=word):
            check_stats(bad)


TASKS = {"pitch": ["low", "high"], "shape": ["sine", "chirp", "noise"]}


def clip(i: int, rate: int) -> tuple[np.ndarray, dict]:
    """Clip i: a sine, chirp or noise burst, low or high, of varying length (shorter and longer than a patch)."""
    g = np.random.default_rng(i)
    pitch, shape = TASKS["pitch"][i % 2], TASKS["shape"][i % 3]
    t = np.arange(int(rate * (0.6 + 0.1 * (i % 7)))) / rate
    f0 = 300.0 if pitch == "low" else 2500.0
    if shape == "sine":
        wave = np.sin(2 * np.pi * f0 * t)
    elif shape == "chirp":
        wave = np.sin(2 * np.pi * f0 * (1 + t) * t)
    else:
        wave = g.standard_normal(t.size) * np.sin(2 * np.pi * f0 / 100 * t)
    wave = 0.5 * wave / np.abs(wave).max()
    return wave.astype(np.float32)[None], {"labels": {"pitch": pitch, "shape": shape}, "name": f"clip{i:03d}"}


def write_prep(folder, settings=MelSettings(), counts=(("train", 14), ("val", 5), ("test", 5)), meta_changes=None):
    rate = settings.sample_rate
    clips = {split: [clip(i + 100 * k, rate) for i in range(n)] for k, (split, n) in enumerate(counts)}
    train = torch.stack([fix_length(torch.from_numpy(w[0]), settings.clip_samples) for w, _ in clips["train"]])
    meta = {"sample_rate": rate, "tasks": TASKS, "features": settings.to_dict(),
            "norm": normalisation_stats(batched_logmel(pcm16(train), settings)), "splits": {}, **(meta_changes or {})}
    members = {"flac": {"type": "flac", "sample_rate": rate}, "json": "json"}
    with staged_output(folder, stage="prep", meta=meta) as tmp:
        for split, items in clips.items():
            samples = ({"flac": w, "json": info} for w, info in items)
            meta["splits"][split] = write_split(tmp, split, samples, members, shard_size=4)
    return folder, clips


@pytest.mark.slow
def test_load_audio_split_shapes_labels_and_normalisation(tmp_path):
    folder, clips = write_prep(tmp_path / "prep")
    s = MelSettings()
    train = load_audio_split(folder, "train", batch_size=4)
    assert train.logmel.shape == (14, 1, 64, 96) and train.logmel.dtype == torch.float32
    assert train.waveforms.shape == (14, s.clip_samples)
    assert train.classes == TASKS and train.settings == s
    assert train.names == [info["name"] for _, info in clips["train"]]
    for task, names in TASKS.items():
        expected = [names.index(info["labels"][task]) for _, info in clips["train"]]
        assert train.labels[task].dtype == torch.int64 and train.labels[task].tolist() == expected
    original = torch.stack([fix_length(torch.from_numpy(w[0]), s.clip_samples) for w, _ in clips["train"]])
    assert torch.equal(train.waveforms, pcm16(original))  # what prep must take its norm statistics from
    assert abs(float(train.logmel.mean())) < 1e-4 and abs(float(train.logmel.std(unbiased=False)) - 1) < 1e-4

    val = load_audio_split(folder, "val", batch_size=2, tasks=["shape"])
    assert list(val.labels) == ["shape"] and list(val.classes) == ["shape"]
    assert val.stats == train.stats
    expected = normalise(LogMel(s)(val.waveforms), train.stats)
    assert torch.allclose(val.logmel, expected, atol=1e-5)
    whole_batches = load_audio_split(folder, "val", batch_size=5, tasks=["shape"])  # 5 clips: no partial batch
    assert torch.allclose(whole_batches.logmel, val.logmel, atol=1e-5)

    own = normalisation_stats(LogMel(s)(val.waveforms))
    with_own = load_audio_split(folder, "val", stats=own)
    assert abs(float(with_own.logmel.mean())) < 1e-4 and with_own.stats == own


@pytest.mark.slow
def test_load_audio_split_errors(tmp_path):
    folder, _ = write_prep(tmp_path / "prep", counts=(("train", 3), ("val", 2), ("test", 1)))
    with pytest.raises(FeatureError, match=r"\['speaker'\] not in .*manifest.json; its tasks: \['pitch', 'shape'\]"):
        load_audio_split(folder, "train", tasks=["pitch", "speaker"])
    with pytest.raises(FeatureError, match="sample_rate = 22050 Hz but .* at 16000 Hz"):
        load_audio_split(folder, "train", settings=MelSettings(sample_rate=22050))
    other = MelSettings(n_mels=32)
    with pytest.raises(FeatureError, match=r"'n_mels': \(32, 64\).*pass stats"):
        load_audio_split(folder, "train", settings=other)
    assert load_audio_split(folder, "train", settings=other, stats={"mean": 0.0, "std": 1.0}).logmel.shape[2] == 32
    with pytest.raises(FeatureError, match="std = -1"):
        load_audio_split(folder, "train", stats={"mean": 0.0, "std": -1})

    bad_meta, _ = write_prep(tmp_path / "nonorm", counts=(("train", 2),), meta_changes={"norm": None})
    with pytest.raises(OutputError, match="meta 'norm'"):
        load_audio_split(bad_meta, "train")
    bad_tasks, _ = write_prep(tmp_path / "classes", counts=(("train", 2),),
                              meta_changes={"tasks": {"pitch": ["low"], "shape": TASKS["shape"]}})
    with pytest.raises(OutputError, match=r"label 'high' for task 'pitch'.*\['low'\]"):
        load_audio_split(bad_tasks, "train")
