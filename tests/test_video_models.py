"""The video watermarking family's networks, distortions and losses: shapes, gradients, determinism, costs
(depthwise and time-into-channels savings), the frame loss, JPEG approximation against Pillow, and a tiny
training run that must learn to carry bits. Tiny sizes throughout: 8 frames of 32×32, 8-bit messages."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from repflow.costs import count_macs, count_params
from repflow.families.video.distortions import (
    DISTORTIONS, Combined, FrameDrop, GaussianNoise, JpegApprox, jpeg_quantisation_tables, straight_through)
from repflow.families.video.losses import (
    bit_accuracy, critic_loss, fidelity_loss, frame_errors, frame_loss, frame_psnr, frame_psnr_summary,
    message_loss)
from repflow.families.video.models import (
    MESSAGE_CODE, MESSAGE_GRID, WATERMARKERS, Critic, HiDDeNDecoder, HiDDeNEncoder, MessageMap, build_watermarker,
    merge_time, split_time)
from repflow.registry import UnknownName

T, L, SIZE = 8, 8, 32
TINY = {"width": 8, "encoder_blocks": 1, "decoder_blocks": 1}


def tiny(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_watermarker(name, T, L, **{**TINY, **kw})


def clips(n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, T, SIZE, SIZE, generator=g), torch.randint(0, 2, (n, L), generator=g).float()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(WATERMARKERS))
def test_shapes_and_a_small_residual_at_init(name):
    wm = tiny(name)
    clip, msg = clips()
    marked = wm.embed(clip, msg)
    assert marked.shape == clip.shape
    assert wm.extract(marked).shape == (2, L)
    residual = (marked - clip).abs()
    assert 0 < residual.mean() < 0.02, residual.mean()


@pytest.mark.parametrize("name", list(WATERMARKERS))
def test_gradients_reach_every_parameter(name):
    wm = tiny(name).train()
    clip, msg = clips()
    marked = wm.embed(clip, msg)
    (fidelity_loss(marked, clip) + message_loss(wm.extract(marked), msg)).backward()
    for pname, p in wm.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(WATERMARKERS))
def test_same_seed_same_output(name):
    clip, msg = clips()
    outputs = [tiny(name, seed).eval().embed(clip, msg) for seed in (3, 3, 4)]
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


def test_merge_time_is_channel_major_and_inverted():
    clip, _ = clips()
    merged = merge_time(clip)
    assert merged.shape == (2, 3 * T, SIZE, SIZE)
    assert torch.equal(merged[:, 1 * T + 5], clip[:, 1, 5])
    assert torch.equal(split_time(merged, T), clip)


def test_registry_and_input_errors_name_the_problem():
    with pytest.raises(UnknownName, match="allowed"):
        build_watermarker("rivagan", T, L)
    with pytest.raises(ValueError, match="pins depthwise=True"):
        build_watermarker("itov_dw", T, L, depthwise=False)
    with pytest.raises(ValueError, match="no option 'depthwise'"):
        build_watermarker("conv3d", T, L, depthwise=True)
    clip, msg = clips()
    with pytest.raises(ValueError, match="built for T=8 frames, got a clip of 4"):
        tiny("itov").embed(clip[:, :, :4], msg)
    with pytest.raises(ValueError, match=r"message must be \(N, L\) = \(2, 8\)"):
        tiny("itov").embed(clip, msg[:, :4])


def _macs(name: str, width: int) -> tuple[int, int]:
    wm = build_watermarker(name, T, L, width=width).eval()
    clip, msg = clips(1)
    return count_macs(wm.embed, clip, msg), count_macs(wm.extract, clip)


@pytest.mark.slow
def test_depthwise_and_time_in_channels_cut_macs():
    macs = {name: _macs(name, 32) for name in WATERMARKERS}
    params = {name: count_params(build_watermarker(name, T, L, width=32)) for name in WATERMARKERS}
    for name in WATERMARKERS:
        print(f"{name}: {params[name]} params, embed {macs[name][0] / 1e6:.1f} M MACs, "
              f"extract {macs[name][1] / 1e6:.1f} M MACs (T={T}, {SIZE}×{SIZE}, width 32, L={L})")
    for stage in (0, 1):
        assert macs["itov"][stage] > 4 * macs["itov_dw"][stage]
        assert macs["per_frame"][stage] > T / 2 * macs["itov"][stage]
        assert macs["conv3d"][stage] > 2 * macs["per_frame"][stage]
    assert params["itov"] > 4 * params["itov_dw"]


def test_encoder_and_decoder_follow_hiddens_layout():
    """HiDDeN's sizes (biases dropped before BN) with the message code map: encoder map L→c·g², blocks 3→w,
    w→w…, concat (c+w+3)→w, 1×1 w→3 (with bias); decoder blocks 3→w, w→w…, w→c, linear c·g²→L. Depthwise
    swaps k²·a·b for k²·a + a·b per conv."""
    w, bn, c, cells = 16, lambda ch: 2 * ch, MESSAGE_CODE, MESSAGE_CODE * MESSAGE_GRID ** 2
    encoder = HiDDeNEncoder(3, L, w, blocks=2)
    assert count_params(encoder) == (L * cells + cells + 9 * 3 * w + bn(w) + 9 * w * w + bn(w)
                                     + 9 * (c + w + 3) * w + bn(w) + w * 3 + 3)
    decoder = HiDDeNDecoder(3, L, w, blocks=2)
    assert count_params(decoder) == 9 * 3 * w + bn(w) + 9 * w * w + bn(w) + 9 * w * c + bn(c) + cells * L + L
    separable = HiDDeNDecoder(3, L, w, blocks=2, depthwise=True)
    assert count_params(separable) == ((9 * 3 + 3 * w) + bn(w) + (9 * w + w * w) + bn(w) + (9 * w + w * c) + bn(c)
                                       + cells * L + L)


def test_message_code_has_a_spatial_layout():
    """Two messages differing in one bit give code maps differing in some 8×8 cells, constant inside each."""
    code = MessageMap(L)
    msg = torch.zeros(2, L)
    msg[1, 0] = 1
    maps = code(msg, (32, 32))
    assert maps.shape == (2, MESSAGE_CODE, 32, 32)
    cell = 32 // MESSAGE_GRID
    assert torch.equal(maps[:, :, :cell, :cell], maps[:, :, :1, :1].expand(-1, -1, cell, cell))
    assert not torch.allclose(maps[0], maps[1])


def test_count_macs_matches_the_conv_formula():
    conv = torch.nn.Conv2d(6, 4, 3, padding=1, groups=2)
    assert count_macs(conv, torch.rand(1, 6, 5, 7)) == 5 * 7 * 4 * 3 * 9


@pytest.mark.parametrize("stride", [1, 2])
def test_critic_scores_each_clip_and_trains(stride):
    critic = Critic(T, width=8, stride=stride)
    clip, _ = clips()
    marked = clip + 0.01 * torch.randn_like(clip)
    real, fake = critic(clip), critic(marked)
    assert real.shape == fake.shape == (2,)
    critic_loss(real, fake).backward()
    assert all(p.grad is not None for p in critic.parameters())


def test_critic_stride_changes_cost_not_weights():
    clip, _ = clips(1)
    full, strided = Critic(T, width=8).eval(), Critic(T, width=8, stride=2).eval()
    assert count_params(full) == count_params(strided) == 3 * T * 8 * 9 + 2 * 8 * 8 * 9 + 3 * 2 * 8 + 8 + 1
    assert count_macs(full, clip) > 3 * count_macs(strided, clip)


def test_frame_loss_is_the_relative_variance_of_per_frame_errors():
    clip, _ = clips()
    marked = clip + 0.05 * torch.randn_like(clip) * torch.linspace(0.2, 2, T).view(1, 1, T, 1, 1)
    direct = 0.0
    for i in range(clip.shape[0]):
        errors = [((marked[i, :, t] - clip[i, :, t]) ** 2).mean() for t in range(T)]
        mean = sum(errors) / T
        direct += sum((e - mean) ** 2 for e in errors) / T / mean ** 2
    assert frame_loss(marked, clip).item() == pytest.approx(direct.item() / clip.shape[0], rel=1e-5)
    assert frame_loss(marked, clip) > 0
    louder = clip + 3 * (marked - clip)
    assert frame_loss(louder, clip).item() == pytest.approx(frame_loss(marked, clip).item(), rel=1e-4)
    residual = (marked - clip).requires_grad_()
    loss = frame_loss(clip + residual, clip)
    loss.backward()
    # the divisor is detached: scaling the mark up raises the loss (degree 4), so it never pays to be louder
    assert (residual.grad * residual).sum().item() == pytest.approx(4 * loss.item(), rel=1e-3)
    signs = torch.tensor([1.0, -1.0] * (T // 2)).view(1, 1, T, 1, 1)
    assert frame_loss(clip + 0.03 * signs, clip).item() == pytest.approx(0, abs=1e-12)


def test_minimising_the_frame_loss_evens_out_the_per_frame_psnr():
    """The mechanism behind ItoV's claim: gradient steps on the frame loss alone pull a watermark that is loud
    in some frames and faint in others towards an even strength (its spread of per-frame PSNR falls)."""
    clip, _ = clips()
    amplitude = torch.linspace(0.005, 0.05, T).view(1, 1, T, 1, 1)
    residual = (amplitude * torch.randn(clip.shape, generator=torch.Generator().manual_seed(3))).requires_grad_()
    before = frame_psnr_summary(clip + residual.detach(), clip)["std"]
    opt = torch.optim.Adam([residual], lr=1e-3)
    for _ in range(100):
        opt.zero_grad()
        frame_loss(clip + residual, clip).backward()
        opt.step()
    after = frame_psnr_summary(clip + residual.detach(), clip)["std"]
    assert before > 5 and after < before / 3


def test_frame_psnr_spread_and_minimum():
    clip, _ = clips()
    marked = clip + torch.tensor([0.01, 0.1]).repeat(T // 2).view(1, 1, T, 1, 1)
    psnr = frame_psnr(marked, clip)
    assert psnr.shape == (2, T)
    assert psnr[0, 0].item() == pytest.approx(40, abs=1e-3) and psnr[0, 1].item() == pytest.approx(20, abs=1e-3)
    summary = frame_psnr_summary(marked, clip)
    assert summary == pytest.approx({"mean": 30, "std": 10, "min": 20}, abs=1e-3)
    assert frame_errors(marked, clip).shape == (2, T)


def test_bit_accuracy_counts_bits():
    msg = torch.tensor([[1.0, 0, 1, 0]])
    assert bit_accuracy(torch.tensor([[2.0, -1, -3, 0.5]]), msg) == 0.5


@pytest.mark.parametrize("name", list(DISTORTIONS))
def test_distortions_keep_shape_and_pass_gradients(name):
    clip, _ = clips()
    clip.requires_grad_(True)
    out = DISTORTIONS[name]()(clip, torch.Generator().manual_seed(0))
    assert out.shape == clip.shape
    out.square().sum().backward()
    assert clip.grad is not None and torch.isfinite(clip.grad).all() and clip.grad.abs().sum() > 0
    if name != "identity":
        assert not torch.allclose(out, clip)


def test_seeded_distortions_repeat():
    clip, _ = clips()
    for distortion in (GaussianNoise(0.1), FrameDrop(0.5), DISTORTIONS["crop"](0.5)):
        a, b = (distortion(clip, torch.Generator().manual_seed(5)) for _ in range(2))
        assert torch.equal(a, b)


def test_frame_drop_repeats_the_last_kept_frame():
    clip, _ = clips(4)
    source = FrameDrop(0.5).source_frames(4, T, torch.Generator().manual_seed(1))
    out = FrameDrop(0.5)(clip, torch.Generator().manual_seed(1))
    assert (source[:, 0] == 0).all() and (source[:, 1:] >= source[:, :-1]).all() and (source <= torch.arange(T)).all()
    assert (source != torch.arange(T)).any()
    for i in range(4):
        for t in range(T):
            assert torch.equal(out[i, :, t], clip[i, :, source[i, t]])
    assert torch.equal(FrameDrop(0.0)(clip), clip)


def test_straight_through_forwards_fn_and_backwards_identity():
    clip, _ = clips()
    clip.requires_grad_(True)
    quantised = straight_through(lambda x: torch.round(x * 4) / 4, name="quantise")
    out = quantised(clip)
    assert torch.equal(out, torch.round(clip.detach() * 4) / 4)
    upstream = torch.randn_like(clip)
    out.backward(upstream)
    assert torch.equal(clip.grad, upstream)
    with pytest.raises(ValueError, match="quantise changed the clip's shape"):
        straight_through(lambda x: x[:, :, :2], name="quantise")(clip)


def test_jpeg_approx_strength_follows_quality():
    clip, _ = clips()
    change = {q: (JpegApprox(q)(clip) - clip).abs().mean().item() for q in (100, 50, 10)}
    assert change[100] < 1 / 255
    assert change[100] < change[50] < change[10]
    with pytest.raises(ValueError, match="jpeg quality must be an int in 1..100"):
        JpegApprox(0)
    with pytest.raises(ValueError, match="rounding 'exact' unknown"):
        JpegApprox(50, rounding="exact")


@pytest.mark.parametrize("quality", [30, 75])
def test_jpeg_approx_is_close_to_pillow(quality):
    """Pillow at 4:4:4 uses the same tables; the approximation (straight-through: exact rounding) lands much
    closer to Pillow's decoded frame than the frame was to the original (the gap: integer IDCT, uint8)."""
    g = torch.Generator().manual_seed(0)
    frame = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(SIZE, SIZE), mode="bicubic")
    frame = (frame.clamp(0, 1) * 255).round() / 255
    buffer = io.BytesIO()
    Image.fromarray((frame[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
        buffer, "JPEG", quality=quality, subsampling=0)
    decoded = Image.open(io.BytesIO(buffer.getvalue()))
    assert list(decoded.quantization[0]) == jpeg_quantisation_tables(quality)[0].int().flatten().tolist()
    real = torch.from_numpy(np.array(decoded.convert("RGB"))).permute(2, 0, 1).float() / 255
    approx = JpegApprox(quality, rounding="straight_through")(frame.unsqueeze(2))[0, :, 0]
    assert (approx - real).abs().mean() < 0.5 * (real - frame[0]).abs().mean()


def test_combined_choice_is_seeded():
    clip, _ = clips()

    def run(seed):
        combined = Combined([DISTORTIONS["identity"](), GaussianNoise(0.1), FrameDrop(0.5)], seed=seed)
        outputs, choices = [], []
        for _ in range(12):
            outputs.append(combined(clip))
            choices.append(combined.last)
        return choices, outputs

    (choices_a, outputs_a), (choices_b, outputs_b), (choices_c, _) = run(7), run(7), run(8)
    assert choices_a == choices_b and all(torch.equal(a, b) for a, b in zip(outputs_a, outputs_b))
    assert choices_a != choices_c
    assert set(choices_a) == {0, 1, 2}


@pytest.mark.slow
def test_itov_learns_to_carry_bits_through_identity():
    """A real check: 250 Adam steps on random clips; decoded bits on fresh clips must beat chance clearly
    (256 bits: chance gives 0.5 ± 0.03)."""
    start = time.perf_counter()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    wm = build_watermarker("itov", T, L, width=16, encoder_blocks=2, decoder_blocks=2)
    opt = torch.optim.Adam(wm.parameters(), lr=3e-3)
    for _ in range(250):
        clip, msg = torch.rand(8, 3, T, SIZE, SIZE, generator=g), torch.randint(0, 2, (8, L), generator=g).float()
        marked = wm.embed(clip, msg)
        loss = 0.7 * fidelity_loss(marked, clip) + message_loss(wm.extract(marked), msg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    wm.eval()
    with torch.no_grad():
        clip, msg = torch.rand(32, 3, T, SIZE, SIZE, generator=g), torch.randint(0, 2, (32, L), generator=g).float()
        accuracy = bit_accuracy(wm.extract(wm.embed(clip, msg)), msg)
    print(f"bit accuracy after 250 steps: {accuracy:.3f} ({time.perf_counter() - start:.1f} s)")
    assert accuracy > 0.65


def test_matched_fidelity_scales_the_residual_to_the_target_psnr():
    """``evaluate_watermarker(target_psnr=)`` marks the clips at the asked PSNR whatever the network's own
    strength, with the scale it reports; a louder network gets a smaller scale."""
    from repflow.families.video.evaluation import evaluate_watermarker, mean_psnr, quantise, scale_for_psnr

    g = torch.Generator().manual_seed(0)
    clips = torch.rand(4, 3, T, SIZE, SIZE, generator=g) * 0.8 + 0.1
    residual = torch.randn(clips.shape, generator=g) * 0.05
    a = scale_for_psnr(clips, residual, 40.0)
    assert abs(mean_psnr(quantise(clips + a * residual), clips) - 40.0) < 0.05
    assert abs(a - 10 ** (-40 / 20) / 0.05) < 0.1 * a  # PSNR of noise of sd a·0.05, before rounding

    model = tiny("itov_dw")
    uint8 = torch.randint(0, 256, (4, T, SIZE, SIZE, 3), generator=g, dtype=torch.uint8)
    scales = {}
    for gain in (1.0, 4.0):
        with torch.no_grad():
            model.encoder.to_residual.weight.mul_(gain)
        metrics, _ = evaluate_watermarker(model, uint8, distortions=["identity"], crfs=[], seed=0, target_psnr=38.0)
        assert abs(metrics["psnr"] - 38.0) < 0.05
        scales[gain] = metrics["residual_scale"]
    assert scales[4.0] < scales[1.0] / 3
    own, _ = evaluate_watermarker(model, uint8, distortions=["identity"], crfs=[], seed=0)
    assert "residual_scale" not in own
