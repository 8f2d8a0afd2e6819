"""The audio family's algorithms: positional transforms, the choice of hardest negatives, the loss against a
direct computation, BYOL-A's augmentations, the encoder, the training loop's determinism and mechanism."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from repflow.families.image.contrastive import nt_xent_loss
from repflow.families.audio.advneg import (block_reorder, frequency_shift, hardest_negatives, nt_xent_with_negatives,
                                           position_sensitivity, positional_candidates, sounding_blocks,
                                           sounding_reorder, time_reverse)
from repflow.families.audio.augment import log_mixup_exp, random_resize_crop
from repflow.families.audio.models import AudioNTT, WaveformClassifier, projection_head
from repflow.families.audio.ssl import AUDIO_METHODS, embed_clips, train_audio_ssl


def _patches(n=6, f=16, t=12, seed=0):
    return torch.randn(n, 1, f, t, generator=torch.Generator().manual_seed(seed))


def test_time_reverse_and_block_reorder():
    x = _patches(t=12)
    assert torch.equal(time_reverse(time_reverse(x)), x)
    moved = block_reorder(x, [2, 0, 1])
    assert torch.equal(moved[..., :4], x[..., 8:]) and torch.equal(moved[..., 4:8], x[..., :4])
    assert torch.equal(block_reorder(moved, [1, 2, 0]), x)  # the inverse order undoes it


def test_frequency_shift_moves_content_and_fills_with_the_mirrored_edge():
    x = _patches()
    up = frequency_shift(x, 3)
    assert torch.equal(up[:, :, 3:], x[:, :, :-3])
    for j in range(3):  # vacated row 2 − j holds source row j + 1 (reflection about row 0)
        assert torch.equal(up[:, :, 2 - j], x[:, :, j + 1])
    down = frequency_shift(x, -3)
    assert torch.equal(down[:, :, :-3], x[:, :, 3:])
    for j in range(3):  # vacated row F − 3 + j holds source row F − 2 − j (reflection about the top row)
        assert torch.equal(down[:, :, x.shape[2] - 3 + j], x[:, :, x.shape[2] - 2 - j])
    assert torch.equal(frequency_shift(x, 0), x)
    with pytest.raises(ValueError, match="frequency shift of 16 mel bins; must be within ±15"):
        frequency_shift(x, 16)


@pytest.mark.parametrize("bins", [1, 5, 12, -1, -5, -12])
def test_a_shifted_clip_has_no_constant_rows(bins):
    x = _patches(n=4, f=16, t=20)
    x[:, :, :6] = x[:, :, :6] * 0.1 - 3  # quiet low rows, as a log-mel's often are, still varying in time
    shifted = frequency_shift(x, bins)
    assert shifted.std(dim=-1).amin() > 1e-3  # a constant fill band would have zero spread along time


def test_sounding_blocks_and_reorders_move_only_blocks_that_hold_sound():
    x = torch.full((3, 1, 4, 16), -4.0)
    x[0, :, :, 4:12] = 2.0  # clip 0: sound in blocks 1 and 2 of 4
    x[1, :, :, 5:7] = 2.0  # clip 1: sound in block 1 only
    # clip 2: silence throughout (constant)
    level = x.mean(dim=(1, 2))
    peak = level.view(3, 4, 4).amax(2)
    lo, hi = level.amin(1, keepdim=True), level.amax(1, keepdim=True)
    assert torch.equal(sounding_blocks(x, 4), (peak >= (lo + hi) / 2) & (hi > lo))
    assert sounding_blocks(x, 4).tolist() == [[False, True, True, False], [False, True, False, False], [False] * 4]
    x[0, :, :, 4:8] = 1.0  # blocks 1 and 2 now differ, so their swap shows
    moved, valid = sounding_reorder(x, torch.Generator().manual_seed(0), blocks=4)
    assert valid.tolist() == [True, False, False]
    assert torch.equal(moved[0], block_reorder(x[0], [0, 2, 1, 3]))  # the only order moving both sounding blocks
    assert torch.equal(moved[1:], x[1:])


def test_candidates_cover_every_transform_and_mark_reorders_without_sound_invalid():
    x = _patches(t=16)
    x[0] = -3.0  # a silent clip: no reorder candidate
    cands, names, valid = positional_candidates(x, torch.Generator().manual_seed(1), shifts=(4, 6), reorders=3,
                                                blocks=4)
    assert cands.shape == (6, 8, 1, 16, 16)
    assert names == ["freq+4", "freq-4", "freq+6", "freq-6", "reverse", "reorder", "reorder", "reorder"]
    assert torch.equal(cands[:, 4], time_reverse(x))
    assert torch.equal(cands[:, 2], frequency_shift(x, 6))
    assert valid[:, :5].all() and not valid[0, 5:].any()
    assert torch.equal(valid[:, 5], sounding_blocks(x, 4).sum(1) >= 2)


def test_hardest_negatives_are_the_most_similar_valid_candidates():
    x = _patches(n=4)
    cands, _, _ = positional_candidates(x, torch.Generator().manual_seed(0), shifts=(2, 5), reorders=1, blocks=3)
    embed = lambda v: v.flatten(1)  # noqa: E731
    neg, idx, sim = hardest_negatives(embed, x, cands, 2)
    direct = torch.stack([torch.stack([F.cosine_similarity(x[i].flatten(), cands[i, j].flatten(), dim=0)
                                       for j in range(cands.shape[1])]) for i in range(len(x))])
    assert torch.allclose(sim, direct, atol=1e-5)
    assert torch.equal(idx[:, 0], direct.argmax(1))
    assert torch.equal(neg[torch.arange(4), 0], cands[torch.arange(4), direct.argmax(1)])
    with pytest.raises(ValueError, match="k = 9 negatives per anchor; must be in 1..6"):
        hardest_negatives(embed, x, cands, 9)
    cands[:, 5] = x  # an invalid candidate that is a copy of its anchor (cosine 1) is never chosen
    valid = torch.ones(4, 6, dtype=torch.bool)
    valid[:, 5] = False
    _, idx, sim = hardest_negatives(embed, x, cands, 1, valid)
    assert (idx[:, 0] != 5).all() and torch.isinf(sim[:, 5]).all()
    with pytest.raises(ValueError, match="only 5 valid candidates"):
        hardest_negatives(embed, x, cands, 6, valid)


def test_loss_with_negatives_matches_a_direct_computation():
    g = torch.Generator().manual_seed(3)
    n, k, d, tau, lam = 5, 3, 8, 0.2, 0.5
    z1, z2, zn = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), torch.randn(n, k, d, generator=g)
    got = nt_xent_with_negatives(z1, z2, zn, temperature=tau, weight=lam)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    negs = F.normalize(zn, dim=2)
    total = 0.0
    for a in range(2 * n):
        i, p = a % n, (a + n) % (2 * n)
        s = lambda u, v: math.exp(float(u @ v) / tau)  # noqa: E731
        denom = sum(s(z[a], z[b]) for b in range(2 * n) if b != a) + lam * sum(s(z[a], negs[i, j]) for j in range(k))
        total += -math.log(s(z[a], z[p]) / denom)
    assert got.item() == pytest.approx(total / (2 * n), rel=1e-5)
    assert nt_xent_with_negatives(z1, z2, None, temperature=tau).item() == pytest.approx(
        nt_xent_loss(z1, z2, temperature=tau).item(), rel=1e-6)
    assert got.item() > nt_xent_with_negatives(z1, z2, None, temperature=tau).item()  # more negatives, more loss


def test_position_sensitivity_is_zero_for_a_frequency_blind_embedding():
    x = _patches(n=8, f=32, t=10)
    x[:, :, :8] = -5.0  # headroom: shifts by up to 8 bins lose nothing but silence
    x[:, :, 24:] = -5.0
    blind = lambda v: v.amax(dim=2).flatten(1) + 10  # noqa: E731  (max over frequency: shift-invariant)
    assert position_sensitivity(blind, x, shifts=(4, -8)) == pytest.approx((0.0, 0.0), abs=1e-4)
    absolute, relative = position_sensitivity(lambda v: v.flatten(1), x, shifts=(4, -8))
    other = float((1 - F.cosine_similarity(x.flatten(1), x.flatten(1).roll(1, 0))).mean())
    assert absolute > 0.3 and relative == pytest.approx(absolute / other, rel=1e-5)


def test_log_mixup_exp_mixes_power_within_bounds():
    x = _patches(n=8)
    assert torch.equal(log_mixup_exp(x, torch.Generator(), ratio=0.0), x)
    out = log_mixup_exp(x, torch.Generator().manual_seed(0), ratio=0.4)
    perm_lo = torch.minimum(x, x.amax(0, keepdim=True))
    assert torch.all(out >= torch.log(torch.tensor(0.6)) + perm_lo - 1e-5)  # at least (1-λ) of its own power
    assert not torch.allclose(out, x)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(log_mixup_exp(x, g1), log_mixup_exp(x, g2))


def test_random_resize_crop_with_unit_scales_is_the_identity():
    x = _patches(n=3, f=16, t=16)
    same = random_resize_crop(x, torch.Generator(), virtual_scale=(1.0, 1.0), freq_scale=(1.0, 1.0),
                              time_scale=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-5)
    moved = random_resize_crop(x, torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and not torch.allclose(moved, x)


def _bump_rows(n=240, f=64, t=8, seed=0):
    """n patches, each a narrow bump (σ 1 row) at a random row, the same in every frame; and those rows."""
    rows = torch.randint(2, f - 2, (n,), generator=torch.Generator().manual_seed(seed))
    grid = torch.arange(f).float()
    x = torch.exp(-0.5 * (grid.view(1, f) - rows.view(n, 1).float()) ** 2).view(n, 1, f, 1).expand(n, 1, f, t)
    return x.contiguous(), rows


def test_random_resize_crop_moves_content_at_most_max_freq_shift_bins():
    x, rows = _bump_rows()
    bounded = random_resize_crop(x, torch.Generator().manual_seed(0), max_freq_shift=4.0)
    moved = (bounded[:, 0, :, x.shape[-1] // 2].argmax(1) - rows).abs()
    assert moved.max() <= 4 + 1  # + 1: the bump's peak is read at the nearest row
    free = random_resize_crop(x, torch.Generator().manual_seed(0))  # BYOL-A's crop moves content much further
    assert (free[:, 0, :, x.shape[-1] // 2].argmax(1) - rows).abs().max() > 8


@pytest.mark.parametrize("freq_pool", ["mean", "flatten"])
def test_encoder_shapes_and_the_waveform_classifier_range(freq_pool):
    enc = AudioNTT(n_mels=16, channels=8, blocks=2, dim=32, freq_pool=freq_pool).eval()
    assert enc(torch.randn(4, 1, 16, 24)).shape == (4, 32)
    with pytest.raises(ValueError, match="n_mels = 18 must be divisible by 2\\*\\*blocks = 4"):
        AudioNTT(n_mels=18, blocks=2)
    seen = []
    probe = torch.nn.Linear(32, 3)
    clf = WaveformClassifier(lambda w: (seen.append(w), torch.randn(len(w), 1, 16, 24))[1], 0.0, 1.0, enc, probe)
    clf(torch.tensor([[[0.0, 0.5, 1.0]]]))
    assert torch.equal(seen[0], torch.tensor([[-1.0, 0.0, 1.0]]))  # [0, 1] attack space ↔ [-1, 1] waveform


def _tiny_train(method, seed=0, epochs=2):
    torch.manual_seed(seed)
    enc = AudioNTT(n_mels=16, channels=8, blocks=2, dim=16)
    head = projection_head(16, 8)
    x = _patches(n=24, f=16, t=16, seed=1)
    hist = train_audio_ssl(enc, head, x, method=method, epochs=epochs, batch_size=8, lr=1e-3, weight_decay=0.0,
                           temperature=0.2, augment={}, seed=seed,
                           negatives={"k": 2, "weight": 1.0, "shifts": [4], "reorders": 1, "blocks": 4})
    return enc, hist, x


@pytest.mark.slow
def test_training_is_deterministic_and_methods_differ_only_by_the_negatives():
    enc_a, hist_a, x = _tiny_train("advneg")
    enc_b, hist_b, _ = _tiny_train("advneg")
    assert all(torch.equal(p, q) for p, q in zip(enc_a.state_dict().values(), enc_b.state_dict().values()))
    assert [h["loss"] for h in hist_a] == [h["loss"] for h in hist_b]
    assert set(hist_a[-1]["chosen"]) <= {"freq+4", "freq-4", "reverse", "reorder"}
    assert sum(hist_a[-1]["chosen"].values()) == 3 * 8 * 2  # 3 batches × 8 clips × k
    enc_c, hist_c, _ = _tiny_train("baseline")
    assert "chosen" not in hist_c[-1]
    assert not torch.equal(embed_clips(enc_a, x), embed_clips(enc_c, x))
    assert list(AUDIO_METHODS) == ["baseline", "advneg"]
