"""The SR family's networks and inference utilities: shapes, gradients, determinism, sizes, DTB's
modulation, the square's symmetries, self-ensemble, MAC counting, and seam-free tiled upscaling."""
from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repflow.families.sr.inference import (ENSEMBLE_ORDER, count_macs, count_other_ops, count_params, self_ensemble,
                                           upscale_tiled)
from repflow.families.sr.models import (DIV2K_RGB_MEAN, DTB, SHSR, SMB, SR_MODELS, Bicubic, EDSRBaseline, SHSRBlock,
                                        build_sr_model)
from repflow.families.sr.symmetry import dihedral, undo_dihedral
from repflow.registry import UnknownName

TINY = {"channels": 8, "blocks": 2}


def tiny(name: str, scale: int, seed: int = 0) -> nn.Module:
    """The registered model at a test size (only the keywords its constructor takes)."""
    accepted = inspect.signature(SR_MODELS[name].factory).parameters
    torch.manual_seed(seed)
    kw = {k: v for k, v in TINY.items() if k in accepted and k not in SR_MODELS[name].fixed}
    return build_sr_model(name, scale, **kw).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SR_MODELS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape(name, scale):
    x = torch.rand(2, 3, 11, 7)
    assert tiny(name, scale)(x).shape == (2, 3, 11 * scale, 7 * scale)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SR_MODELS))
def test_gradients_reach_every_parameter_and_the_input(name):
    model = tiny(name, 2).train()
    x = torch.rand(2, 3, 12, 12, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SR_MODELS))
def test_same_seed_same_weights_and_output(name):
    x = torch.rand(1, 3, 10, 9)
    a, b = tiny(name, 2, seed=3), tiny(name, 2, seed=3)
    assert torch.equal(a(x), b(x))
    if count_params(a):
        assert not torch.equal(a(x), tiny(name, 2, seed=4)(x))


def test_registry_errors_name_the_problem():
    with pytest.raises(UnknownName, match="allowed"):
        build_sr_model("srcnn", 2)
    with pytest.raises(ValueError, match="no option 'width'.*channels"):
        build_sr_model("shsr", 2, width=8)
    with pytest.raises(ValueError, match="pins dtb=False"):
        build_sr_model("shsr_no_dtb", 2, dtb=True)
    with pytest.raises(ValueError, match="scale 5 unsupported"):
        build_sr_model("edsr", 5)
    with pytest.raises(ValueError, match="window must be an odd int"):
        SHSR(2, window=4)
    assert not any(isinstance(m, DTB) for m in build_sr_model("shsr_no_dtb", 2).modules())


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 4])
def test_shsr_is_smaller_and_cheaper_than_the_edsr_baseline(scale):
    with torch.device("meta"):  # sizes only: no weights initialised, no arithmetic done
        shsr, edsr = build_sr_model("shsr", scale), build_sr_model("edsr", scale)
    p_shsr, p_edsr = count_params(shsr), count_params(edsr)
    m_shsr, m_edsr = count_macs(shsr, (1, 3, 48, 48)), count_macs(edsr, (1, 3, 48, 48))
    print(f"x{scale}: shsr {p_shsr} params {m_shsr} MACs; edsr {p_edsr} params {m_edsr} MACs")
    assert p_shsr < 0.8 * p_edsr
    assert m_shsr < 0.85 * m_edsr


def test_shared_smb_weights_have_fewer_parameters():
    unshared, shared = SHSR(2, **TINY), SHSR(2, shared=True, **TINY)
    saved = count_params(unshared) - count_params(shared)
    assert saved == TINY["blocks"] * 2 * (9 * 8 * 8 + 8)  # two of each SMB's three 3×3 convs
    assert count_macs(shared, (1, 3, 16, 16)) == count_macs(unshared, (1, 3, 16, 16))


def _zero_modulation(dtb: DTB) -> None:
    for conv in (dtb.channel_branch[-1], dtb.spatial_branch):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)


def test_dtb_without_modulation_is_instance_normalisation_and_factors_set_the_statistics():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 20, 20) * 3 + 5
    dtb = DTB(6, window=None)
    _zero_modulation(dtb)
    y = dtb(x)
    assert y.mean(dim=(2, 3)).abs().max() < 1e-4
    assert (y.std(dim=(2, 3), unbiased=False) - 1).abs().max() < 1e-3
    with torch.no_grad():
        dtb.channel_branch[-1].bias[:6] = 1.0   # γ_c = 1 → γ = 2
        dtb.channel_branch[-1].bias[6:] = -0.5  # β_c = −0.5
    y = dtb(x)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.full((2, 6), -0.5), atol=1e-4)
    assert torch.allclose(y.std(dim=(2, 3), unbiased=False), torch.full((2, 6), 2.0), atol=2e-3)


@pytest.mark.parametrize("window", [None, 5])
def test_dtb_factors_depend_on_the_content(window):
    """Normalisation alone is blind to an affine change of the input (x → 3x + 5); DTB's γ(x), β(x) are not."""
    torch.manual_seed(1)
    x = torch.randn(1, 6, 16, 16)
    moved = 3 * x + 5
    dtb = DTB(6, window=window, eps=1e-8)
    assert (dtb(x) - dtb(moved)).abs().max() > 0.1
    _zero_modulation(dtb)
    assert torch.allclose(dtb(x), dtb(moved), atol=1e-4)


def test_local_dtb_ignores_pixels_beyond_its_window():
    dtb = DTB(4, window=5)
    x = torch.randn(1, 4, 15, 15, requires_grad=True)
    dtb(x)[0, :, 7, 7].sum().backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1)), as_tuple=True)
    assert (rows - 7).abs().max() == 2 and (cols - 7).abs().max() == 2


def _window_moments(x: torch.Tensor, window: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance over each pixel's window, looped over pixels: the window clipped to the
    image (padding excluded), or the whole map."""
    if window is None:
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x), x.var(dim=(2, 3), unbiased=False, keepdim=True)
    r, (h, w) = window // 2, x.shape[2:]
    mean, var = torch.empty_like(x), torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            patch = x[:, :, max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
            mean[:, :, i, j] = patch.mean(dim=(2, 3))
            var[:, :, i, j] = patch.var(dim=(2, 3), unbiased=False)
    return mean, var


def _dtb_direct(dtb: DTB, x: torch.Tensor) -> torch.Tensor:
    """DTB's formula written out: γ ⊙ (x − μ)/√(σ² + eps) + β, μ and σ² from :func:`_window_moments`."""
    mean, var = _window_moments(x, dtb.window)
    channel_mean = mean[:, :, :1, :1] if dtb.window is None else mean
    gamma_c, beta_c = dtb.channel_branch(channel_mean).chunk(2, dim=1)
    gamma_s, beta_s = dtb.spatial_branch(x).chunk(2, dim=1)
    return (1 + gamma_c + gamma_s) * (x - mean) / torch.sqrt(var + dtb.eps) + beta_c + beta_s


def _smb_fuse_direct(smb: SMB, x: torch.Tensor) -> torch.Tensor:
    f1 = F.relu(F.conv2d(x, smb.convs[0].weight, smb.convs[0].bias, padding=1))
    f2 = F.relu(F.conv2d(f1, smb.convs[1].weight, smb.convs[1].bias, padding=1))
    f3 = F.relu(F.conv2d(f2, smb.convs[2].weight, smb.convs[2].bias, padding=1))
    return F.conv2d(torch.cat([f1, f2, f3], dim=1), smb.fuse.weight, smb.fuse.bias)


@pytest.mark.parametrize("window", [7, 3, None])
def test_dtb_matches_its_formula_with_windowed_statistics(window):
    torch.manual_seed(2)
    x = torch.randn(2, 5, 9, 11).double() * 2 + 1
    dtb = DTB(5, window=window).double()
    assert torch.allclose(dtb(x), _dtb_direct(dtb, x), atol=1e-9)


@pytest.mark.parametrize("placement", ["trunk", "branch"])
@pytest.mark.parametrize("window", [7, None])
def test_shsr_block_placement_matches_a_direct_computation(placement, window):
    torch.manual_seed(3)
    block = SHSRBlock(6, dtb=True, shared=False, window=window, placement=placement).double()
    x = torch.randn(1, 6, 10, 10).double()
    fuse = _smb_fuse_direct(block.smb, x)
    expected = (x + _dtb_direct(block.dtb, fuse) if placement == "branch"
                else _dtb_direct(block.dtb, fuse + x) + x)
    assert torch.allclose(block(x), expected, atol=1e-9)


def test_dtb_options_reach_every_block_and_bad_ones_are_refused():
    model = build_sr_model("shsr", 2, dtb_placement="branch", window=None, dtb_eps=0.01, **TINY)
    blocks = [m for m in model.modules() if isinstance(m, SHSRBlock)]
    assert len(blocks) == TINY["blocks"] and all(b.placement == "branch" and b.dtb.eps == 0.01
                                                 and b.dtb.window is None for b in blocks)
    assert model.config["dtb_placement"] == "branch" and model.config["dtb_eps"] == 0.01
    with pytest.raises(ValueError, match="placement 'side' unknown; allowed: trunk, branch"):
        build_sr_model("shsr", 2, dtb_placement="side")
    with pytest.raises(ValueError, match="eps must be > 0"):
        build_sr_model("shsr", 2, dtb_eps=0.0)


@pytest.mark.parametrize("eps", [1e-3, 1e-1])
def test_dtb_gain_on_a_flat_window_is_bounded_by_eps(eps):
    """A flat region with a ripple of 1e-4 is amplified by 1/√(σ² + eps) ≈ eps^(-1/2), no more."""
    dtb = DTB(1, window=None, eps=eps)
    _zero_modulation(dtb)
    ripple = 1e-4 * torch.tensor([1.0, -1.0]).repeat(32)[None, None, None].expand(1, 1, 8, 64)
    gain = (dtb(0.5 + ripple).std() / ripple.std()).item()
    assert gain == pytest.approx(1 / (1e-8 + eps) ** 0.5, rel=1e-2)


def test_dtb_window_sums_are_counted_as_macs_and_other_ops_are_counted_by_op():
    class BoxMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.dtb = DTB(4, window=7)

        def forward(self, x):
            return self.dtb._box_mean(x)

    c, h, w = 4, 9, 12
    assert count_macs(BoxMean(), (1, c, h, w)) == 2 * c * h * w * 7 + (h + w) * 7  # k×1 + 1×k, then the counts
    pool_relu = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 1))
    ops = count_other_ops(pool_relu, (1, 2, 5, 5))
    assert ops == {"avg_pool2d": 50 * 9, "relu": 50}  # the conv is a MAC, not an other op
    assert count_other_ops(Bicubic(2), (1, 3, 4, 4))["upsample_bicubic2d"] == 3 * 8 * 8 * 16


class NearestUpscaler(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest")


def test_the_eight_symmetries_one_per_code_per_sample_or_per_batch_and_their_inverses():
    square, wide = torch.rand(8, 3, 6, 6), torch.rand(2, 3, 5, 7)
    per_batch = [dihedral(square, code) for code in range(8)]
    assert torch.equal(dihedral(square, torch.arange(8)), torch.stack([t[i] for i, t in enumerate(per_batch)]))
    assert len({tuple(t[0].flatten().tolist()) for t in per_batch}) == 8
    for code in range(8):
        assert torch.equal(undo_dihedral(dihedral(wide, code), code), wide)
    rotations = [torch.rot90(flipped, k, dims=(-2, -1)) for flipped in (wide, wide.flip(-1)) for k in range(4)]
    assert all(torch.equal(dihedral(wide, code), r) for code, r in zip(ENSEMBLE_ORDER, rotations))
    with pytest.raises(ValueError, match="must be in 0..7"):
        dihedral(wide, 8)


@pytest.mark.parametrize("model", [Bicubic(2), Bicubic(3), NearestUpscaler()], ids=["bicubic2", "bicubic3", "nearest"])
def test_self_ensemble_of_an_equivariant_upscaler_is_itself(model):
    x = torch.rand(2, 3, 9, 13)
    assert torch.allclose(self_ensemble(model, x), model(x), atol=1e-5)


@pytest.mark.slow
def test_self_ensemble_of_a_learned_model_differs_from_one_pass_and_is_equivariant():
    model = tiny("shsr", 2)
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        ensemble, single = self_ensemble(model, x), model(x)
        assert (ensemble - single).abs().max() > 1e-3
        rotated = self_ensemble(model, torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.allclose(rotated, torch.rot90(ensemble, 1, dims=(-2, -1)), atol=1e-5)


@pytest.mark.parametrize("k,c_in,c_out", [(3, 5, 7), (1, 4, 6)])
def test_macs_of_a_conv_follow_the_formula(k, c_in, c_out):
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2)
    assert count_macs(conv, (1, c_in, 11, 13)) == 11 * 13 * c_in * c_out * k * k
    assert count_macs(conv, (2, c_in, 11, 13)) == 2 * 11 * 13 * c_in * c_out * k * k


def test_count_macs_rejects_a_bad_shape():
    with pytest.raises(ValueError, match="4 positive ints"):
        count_macs(nn.Identity(), (3, 48, 48))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SR_MODELS))
def test_receptive_radius_bounds_the_dependence(name):
    """Gradient of one output pixel: no input pixel beyond receptive_radius (in LR px) affects it."""
    scale = 3
    model = tiny(name, scale).double()
    x = (0.25 + 0.5 * torch.rand(1, 3, 41, 41, dtype=torch.float64)).requires_grad_()  # inside bicubic's clamp
    i = 20 * scale  # not on an LR sample, where bicubic needs one tap only
    model(x)[0, :, i, i].sum().backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1)), as_tuple=True)
    reach = max((rows - i // scale).abs().max().item(), (cols - i // scale).abs().max().item())
    assert 0 < reach <= model.receptive_radius


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SR_MODELS))
@pytest.mark.parametrize("scale", [2, 3])
def test_tiled_upscaling_equals_the_whole_image_and_too_little_overlap_shows_seams(name, scale):
    model = tiny(name, scale).double()
    radius = model.receptive_radius
    image = torch.rand(1, 3, 2 * radius + 23, 3 * radius + 11, dtype=torch.float64)  # not a multiple of a tile
    tile = 2 * radius + 9
    with torch.no_grad():
        whole = model(image)
    tiled = upscale_tiled(model, image, scale, tile=tile, overlap=radius)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max() < 1e-9
    short = upscale_tiled(model, image, scale, tile=tile, overlap=radius // 4)
    seams = (short - whole).abs().amax(dim=(0, 1))
    assert seams.max() > 1e-6
    core_edge = scale * (tile - 2 * (radius // 4))  # the first core's end, in HR pixels
    assert seams[:, core_edge - 1:core_edge + 1].max() > 1e-6


@pytest.mark.slow
def test_global_statistics_make_tiling_inexact():
    """Why DTB's statistics are local by default: with whole-map statistics a tile sees other statistics."""
    torch.manual_seed(0)
    model = SHSR(2, window=None, **TINY).double().eval()
    image = torch.rand(1, 3, 40, 40, dtype=torch.float64)
    with torch.no_grad():
        whole = model(image)
    assert (upscale_tiled(model, image, 2, tile=32, overlap=12) - whole).abs().max() > 1e-4
    assert model.receptive_radius is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shsr", "bicubic"])
def test_image_smaller_than_a_tile_is_one_pass(name):
    model = tiny(name, 2)
    image = torch.rand(1, 3, 13, 17)
    with torch.no_grad():
        assert torch.equal(upscale_tiled(model, image, 2), model(image))


def test_tiled_upscaling_validates_its_arguments():
    model, image = Bicubic(2), torch.rand(1, 3, 20, 20)
    with pytest.raises(ValueError, match=r"tile \(32\) must be larger than 2·overlap \(32\)"):
        upscale_tiled(model, image, 2, tile=32, overlap=16)
    with pytest.raises(ValueError, match="overlap must be an int >= 0"):
        upscale_tiled(model, image, 2, overlap=-1)
    with pytest.raises(ValueError, match=r"image must be \(N, 3, H, W\)"):
        upscale_tiled(model, image[0], 2)
    with pytest.raises(ValueError, match="float"):
        upscale_tiled(model, (image * 255).to(torch.uint8), 2)
    with pytest.raises(ValueError, match="does the model upscale by scale=3"):
        upscale_tiled(model, image, 3, tile=12, overlap=2)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [SHSR, EDSRBaseline])
def test_global_skip_adds_bicubic_and_without_it_the_mean(cls):
    """With the output conv silenced, the model returns exactly what its skip adds."""
    x = torch.rand(1, 3, 9, 10)
    with_skip, without = cls(2, global_skip=True, **TINY), cls(2, global_skip=False, **TINY)
    for model in (with_skip, without):
        nn.init.zeros_(model.tail.weight)
        nn.init.zeros_(model.tail.bias)
    bicubic = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.allclose(with_skip(x), bicubic, atol=1e-6)
    mean = torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1).expand(1, 3, 18, 20)
    assert torch.allclose(without(x), mean)
    torch.manual_seed(0)
    tiled_model = cls(2, global_skip=False, **TINY).double().eval()
    image = torch.rand(1, 3, 20, 13, dtype=torch.float64)
    radius = tiled_model.receptive_radius
    with torch.no_grad():
        whole = tiled_model(image)
    assert (upscale_tiled(tiled_model, image, 2, tile=2 * radius + 9, overlap=radius) - whole).abs().max() < 1e-9
