"""The advneg benchmark's positive-control data: classes set by absolute frequency band alone (and a second task
by time alone), checked against a direct reading of each patch."""
from __future__ import annotations

import torch

from benchmarks.audio_advneg import BAND_CENTRES, synthetic_bands


def test_band_classes_sit_at_their_rows_and_pulse_classes_count_the_onsets():
    x, labels = synthetic_bands(64, seed=3, frames=48)
    assert x.shape == (64, 1, 64, 48)
    profile = x[:, 0].mean(dim=2)  # (N, F): the event's band stands out of the −1 background
    peak = profile.argmax(dim=1)
    centres = torch.tensor(BAND_CENTRES)[labels["band"]]
    assert (peak - centres).abs().max() <= 3  # centre jitter ±2 rows, read at the nearest row
    rows = (peak.view(-1, 1) + torch.arange(-2, 3).view(1, -1)).clamp(0, 63)  # the band's 5 rows, averaged over
    level = x[:, 0].gather(1, rows.unsqueeze(2).expand(-1, -1, 48)).mean(1)  # noise: σ 0.3 / √5 per frame
    loud = level > -0.3  # background −1; a pulse lifts the band's rows by ≥ 2 × their profile (~0.7 on average)
    onsets = (loud[:, 1:] & ~loud[:, :-1]).sum(1) + loud[:, 0].long()
    assert torch.equal(onsets, labels["pulses"] + 1)
    assert torch.equal(synthetic_bands(64, seed=3, frames=48)[0], x)
    assert len(set(labels["band"].tolist())) == 4 and len(set(labels["pulses"].tolist())) == 4
