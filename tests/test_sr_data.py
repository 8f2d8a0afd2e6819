"""The SR family's data side: MATLAB-style bicubic, photo sources, Y-channel metrics, patches and splits."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from repflow.families.sr.imresize import ImresizeError, imresize
from repflow.families.sr.metrics import MetricError, psnr_y, rgb_to_y, shave, ssim_y
from repflow.families.sr.patches import PatchError, lr_of, random_patches, split_photos
from repflow.families.sr.photos import SKIMAGE_COLOUR, SKIMAGE_GREY, SourceError, read_photos

skimage = pytest.importorskip("skimage")


# ---------------------------------------------------------------- imresize


def _keys_cubic(d: float) -> float:
    """Keys (1981) with a = -0.5, written out piecewise."""
    d = abs(d)
    if d <= 1:
        return 1.5 * d ** 3 - 2.5 * d ** 2 + 1
    if d < 2:
        return -0.5 * d ** 3 + 2.5 * d ** 2 - 4 * d + 2
    return 0.0


def _mirror(k: int, n: int) -> int:
    """1-based index k folded into 1..n by half-sample reflection (0 → 1, n + 1 → n)."""
    while k < 1 or k > n:
        k = 1 - k if k < 1 else 2 * n + 1 - k
    return k


def _taps(i: int, n: int, scale: float) -> list[tuple[int, float]]:
    """MATLAB's contributions of output pixel i (1-based) along an axis of n pixels: (input index, weight)."""
    stretch = scale if scale < 1 else 1.0
    width = 4 / stretch
    u = i / scale + 0.5 * (1 - 1 / scale)
    first = math.floor(u - width / 2)
    taps = [(k, stretch * _keys_cubic(stretch * (u - k))) for k in range(first, first + math.ceil(width) + 2)]
    total = sum(w for _, w in taps)
    return [(_mirror(k, n), w / total) for k, w in taps]


def _reference(image: np.ndarray, scale: float) -> np.ndarray:
    """Every output pixel as a direct double sum over its 2-D neighbourhood."""
    h, w = image.shape
    out = np.zeros((math.ceil(h * scale), math.ceil(w * scale)))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = sum(wr * wc * image[r - 1, c - 1]
                            for r, wr in _taps(i + 1, h, scale) for c, wc in _taps(j + 1, w, scale))
    return out


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 0.6, 2, 3, 1.5])
def test_imresize_matches_direct_matlab_weights(scale):
    image = np.random.default_rng(0).random((9, 13))
    ours = imresize(torch.from_numpy(image), scale).numpy()
    np.testing.assert_allclose(ours, _reference(image, scale), atol=1e-12)


def test_imresize_without_antialias_matches_published_octave_numbers():
    # Octave's MATLAB-compatible imresize(reshape(0:15,4,4)', 0.5, 'bicubic', 'Antialiasing', false)
    out = imresize(torch.arange(16, dtype=torch.float64).reshape(4, 4), 0.5, antialias=False)
    np.testing.assert_allclose(out.numpy(), [[2.1875, 4.3125], [10.6875, 12.8125]], atol=1e-12)


def test_imresize_antialias_removes_what_the_new_grid_cannot_hold():
    y, x = torch.meshgrid(torch.arange(36.0), torch.arange(36.0), indexing="ij")
    checkerboard = ((x + y) % 2).to(torch.float64)
    smoothed = imresize(checkerboard, 1 / 3)[2:-2, 2:-2]
    aliased = imresize(checkerboard, 1 / 3, antialias=False)[2:-2, 2:-2]
    assert float((smoothed - 0.5).abs().max()) < 1e-3
    assert set(aliased.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 0.7, 2, 3, 4])
def test_imresize_keeps_a_constant_image_constant(scale):
    out = imresize(torch.full((2, 3, 13, 17), 0.3), scale)
    assert float((out - 0.3).abs().max()) < 1e-6


@pytest.mark.parametrize("factor,expected", [(2, (25, 19)), (3, (17, 13)), (4, (13, 10))])
def test_imresize_downscale_size_is_ceil(factor, expected):
    assert imresize(torch.rand(1, 3, 50, 37), 1 / factor).shape == (1, 3, *expected)
    assert imresize(torch.rand(1, 3, 48, 36), size=(48 // factor, 36 // factor)).shape[-2:] == (48 // factor,
                                                                                               36 // factor)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_imresize_up_then_down_returns_a_smooth_image(factor):
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = (0.5 + 0.2 * torch.sin(2 * math.pi * x / 16) * torch.cos(2 * math.pi * y / 11)).to(torch.float64)
    back = imresize(imresize(smooth, factor), 1 / factor)
    assert back.shape == smooth.shape
    assert float((back - smooth)[4:-4, 4:-4].abs().max()) < 2e-3
    assert float((back - smooth).abs().max()) < 1e-2


def test_imresize_rejects_bad_arguments():
    with pytest.raises(ImresizeError, match="exactly one of scale and size"):
        imresize(torch.rand(1, 3, 8, 8))
    with pytest.raises(ImresizeError, match="float tensor"):
        imresize(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(ImresizeError, match="scale -2"):
        imresize(torch.rand(8, 8), -2)


# ---------------------------------------------------------------- metrics


def _pair(seed: int = 0, shape=(2, 3, 40, 52)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    hr = torch.rand(shape, generator=gen)
    sr = (hr + 0.08 * torch.randn(shape, generator=gen)).clamp(0, 1)
    return sr, hr


def _skimage_y(x: torch.Tensor, border: int) -> list[np.ndarray]:
    """Y of each image as skimage computes it from the 8-bit RGB, shaved."""
    from skimage.color import rgb2ycbcr

    stored = torch.round(x.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [rgb2ycbcr(im)[border:-border, border:-border, 0] for im in stored]


def test_rgb_to_y_matches_matlab_range_and_skimage():
    from skimage.color import rgb2ycbcr

    corners = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]).view(2, 3, 1, 1)
    assert rgb_to_y(corners).flatten().tolist() == pytest.approx([16.0, 235.0])
    image = torch.randint(0, 256, (1, 3, 5, 7), dtype=torch.uint8)
    np.testing.assert_allclose(rgb_to_y(image)[0, 0].numpy(), rgb2ycbcr(image[0].permute(1, 2, 0).numpy())[..., 0],
                               atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(image), rgb_to_y(image.double() / 255), atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_psnr_y_agrees_with_skimage(scale):
    from skimage.metrics import peak_signal_noise_ratio

    sr, hr = _pair(scale)
    ours = psnr_y(sr, hr, scale)
    theirs = [peak_signal_noise_ratio(h, s, data_range=255) for s, h in zip(_skimage_y(sr, scale),
                                                                             _skimage_y(hr, scale))]
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-9)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_ssim_y_agrees_with_skimage(scale):
    # skimage filters the whole image (reflect padding) but averages its map with (win - 1) / 2 = 5 pixels
    # cropped from each side: exactly the 'valid' region, so the means are the same number.
    from skimage.metrics import structural_similarity

    sr, hr = _pair(10 + scale)
    ours = ssim_y(sr, hr, scale)
    theirs = [structural_similarity(h, s, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=255) for s, h in zip(_skimage_y(sr, scale), _skimage_y(hr, scale))]
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-9)
    assert 0 < float(ours.min()) < 1


def test_metrics_quantise_to_8_bits_and_ignore_the_shaved_border():
    _, hr = _pair(3, (1, 3, 30, 30))
    hr = torch.round(hr * 255) / 255
    assert math.isinf(float(psnr_y(hr + 0.4 / 255, hr, 2)))
    assert float(ssim_y(hr + 0.4 / 255, hr, 2)) == pytest.approx(1.0)
    damaged = hr.clone()
    damaged[..., :3, :] = 1 - damaged[..., :3, :]
    assert math.isinf(float(psnr_y(damaged, hr, 3)))
    assert math.isfinite(float(psnr_y(damaged, hr, 2)))


def test_metrics_are_per_image_and_fall_with_noise():
    _, hr = _pair(4, (1, 3, 32, 32))
    noise = torch.randn(hr.shape, generator=torch.Generator().manual_seed(5))
    batch = torch.cat([(hr + s * noise).clamp(0, 1) for s in (0.01, 0.05, 0.2)])
    psnr, ssim = psnr_y(batch, hr.expand_as(batch), 2), ssim_y(batch, hr.expand_as(batch), 2)
    assert psnr.shape == ssim.shape == (3,)
    assert psnr[0] > psnr[1] > psnr[2] and ssim[0] > ssim[1] > ssim[2]


def test_metrics_reject_what_they_cannot_score():
    with pytest.raises(MetricError, match="same shape"):
        psnr_y(torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 22), 2)
    with pytest.raises(MetricError, match=r"\(N, 3, H, W\)"):
        psnr_y(torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 20), 2)
    with pytest.raises(MetricError, match="at least 11x11"):
        ssim_y(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), 4)
    with pytest.raises(MetricError, match="leaves nothing"):
        shave(torch.rand(1, 1, 6, 6), 3)


# ---------------------------------------------------------------- patches and splits


def test_split_is_by_photo_disjoint_and_seeded():
    train, test = split_photos(20, 0.25, seed=1)
    assert len(test) == 5 and len(train) == 15
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(range(20))
    again = split_photos(20, 0.25, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((train, test), again))
    assert not np.array_equal(split_photos(20, 0.25, seed=2)[1], test)
    assert [len(part) for part in split_photos(3, 0.01, seed=0)] == [2, 1]
    assert [len(part) for part in split_photos(3, 0.99, seed=0)] == [1, 2]


def test_split_needs_two_photos_and_a_fraction():
    with pytest.raises(PatchError, match="1 photo"):
        split_photos(1, 0.5, 0)
    with pytest.raises(PatchError, match="test_fraction 1.5"):
        split_photos(10, 1.5, 0)


def _position_photo(height: int, width: int, tag: int) -> np.ndarray:
    """A photo whose pixel (y, x) holds (y, x, tag), so a patch tells where it came from."""
    y, x = np.mgrid[:height, :width]
    return np.stack([y, x, np.full_like(y, tag)], axis=-1).astype(np.uint8)


def test_random_patches_are_seeded_crops_of_the_photos():
    photos = [_position_photo(60, 80, 0), _position_photo(100, 50, 1)]
    patches = random_patches(photos, 24, 40, seed=3)
    assert patches.shape == (40, 24, 24, 3) and patches.dtype == np.uint8
    for patch in patches:
        top, left, tag = (int(v) for v in patch[0, 0])
        np.testing.assert_array_equal(patch, photos[tag][top:top + 24, left:left + 24])
    assert set(patches[:, 0, 0, 2].tolist()) == {0, 1}
    np.testing.assert_array_equal(patches, random_patches(photos, 24, 40, seed=3))
    assert not np.array_equal(patches, random_patches(photos, 24, 40, seed=4))


def test_random_patches_reject_sizes_that_do_not_serve_every_scale():
    photos = [_position_photo(60, 60, 0)]
    with pytest.raises(PatchError, match="multiple of 12"):
        random_patches(photos, 32, 4, seed=0)
    with pytest.raises(PatchError, match="smaller than hr_size 72"):
        random_patches(photos, 72, 4, seed=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_of_sizes_and_quantisation(scale):
    hr = random_patches([skimage.data.astronaut()], 48, 3, seed=0)
    low = lr_of(hr, scale)
    assert low.shape == (3, 48 // scale, 48 // scale, 3) and low.dtype == np.uint8
    as_tensor = torch.from_numpy(hr).permute(0, 3, 1, 2).float() / 255
    low_tensor = lr_of(as_tensor, scale)
    assert low_tensor.shape == (3, 3, 48 // scale, 48 // scale)
    np.testing.assert_array_equal(torch.round(low_tensor * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy(), low)
    np.testing.assert_array_equal(lr_of(hr[0], scale), low[0])
    with pytest.raises(PatchError, match="not divisible"):
        lr_of(as_tensor[..., :47, :], scale)


# ---------------------------------------------------------------- photo sources


def test_skimage_photos_load_offline_as_rgb():
    photos = read_photos("skimage")
    assert photos.names == sorted(SKIMAGE_COLOUR + SKIMAGE_GREY)
    assert all(im.dtype == np.uint8 and im.ndim == 3 and im.shape[2] == 3 for im in photos.images)
    shapes = dict(zip(photos.names, (im.shape for im in photos.images)))
    assert shapes["astronaut"] == (512, 512, 3) and shapes["stereo_motorcycle"] == (500, 741, 3)
    camera = photos.images[photos.names.index("camera")]
    assert np.array_equal(camera[..., 0], camera[..., 2])
    assert not photos.skipped


def test_folder_skips_what_does_not_decode_and_reads_the_rest_in_order(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "a_grey.PNG")
    Image.fromarray(rng.integers(0, 256, (12, 14, 4), dtype=np.uint8)).save(tmp_path / "c_alpha.webp")
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "d.JPG")
    (tmp_path / "e_not_an_image.jpg").write_text("hello")
    whole = (tmp_path / "d.JPG").read_bytes()
    (tmp_path / "f_truncated.jpg").write_bytes(whole[:len(whole) // 2])
    (tmp_path / "notes.txt").write_text("ignored")
    photos = read_photos("folder", str(tmp_path))
    assert photos.names == ["a_grey.PNG", "b.png", "c_alpha.webp", "d.JPG"]
    assert [im.shape for im in photos.images] == [(16, 16, 3), (20, 30, 3), (12, 14, 3), (40, 40, 3)]
    assert [s["file"].rsplit("/", 1)[-1] for s in photos.skipped] == ["e_not_an_image.jpg", "f_truncated.jpg"]
    assert all(s["error"] for s in photos.skipped)


def test_folder_without_decodable_photos_is_an_error(tmp_path):
    (tmp_path / "x.png").write_text("no")
    (tmp_path / "y.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(SourceError, match=f"none of the 2 image files in {tmp_path}"):
        read_photos("folder", str(tmp_path))
    with pytest.raises(SourceError, match="does not exist"):
        read_photos("folder", str(tmp_path / "missing"))


def test_photo_source_errors_name_the_fix(tmp_path):
    with pytest.raises(SourceError, match=f"{tmp_path}.*apt-get install mate-backgrounds"):
        read_photos("mate-backgrounds", str(tmp_path))
    with pytest.raises(SourceError, match="allowed: skimage, mate-backgrounds, folder"):
        read_photos("div2k")
    with pytest.raises(SourceError, match="needs a path"):
        read_photos("folder")
    with pytest.raises(SourceError, match="no folder"):
        read_photos("skimage", str(tmp_path))
