"""Train/test splits by photo, random high-resolution patches, and their low-resolution versions.

Patch sizes: an HR patch of side ``hr_size`` gives an LR patch of side ``hr_size / scale`` only when ``scale``
divides it, so one set of HR patches serves x2, x3 and x4 exactly when ``hr_size`` is a multiple of 12
(:data:`PATCH_MULTIPLE`; e.g. 48 → LR 24 / 16 / 12, 96 → 48 / 32 / 24). :func:`random_patches` insists on that.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from repflow.families.sr.imresize import imresize

__all__ = ["split_photos", "random_patches", "lr_of", "PatchError", "PATCH_MULTIPLE", "SCALES"]

SCALES = (2, 3, 4)
PATCH_MULTIPLE = 12
"""Least common multiple of :data:`SCALES`: HR patch sides must be multiples of it."""


class PatchError(ValueError):
    """Arguments the splitter or patch sampler cannot use; the message names the value and what is allowed."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise PatchError(f"{name} {value!r} must be an int >= 1")
    return int(value)


def split_photos(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split photos 0..n-1 into sorted (train_idx, test_idx) int64 index arrays: a seeded permutation, the
    first ``round(n * test_fraction)`` (clipped to 1..n-1) for test. By photo, so no photo's patches are in
    both sets (patches of one photo are correlated; a patch split would leak)."""
    n = _positive_int("split_photos: n (number of photos)", n)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise PatchError(f"split_photos: test_fraction {test_fraction!r} must be a number in (0, 1)")
    if n < 2:
        raise PatchError(f"split_photos: {n} photo cannot give both a train and a test photo; at least 2 needed")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]).astype(np.int64), np.sort(order[:n_test]).astype(np.int64)


def random_patches(images: list[np.ndarray], hr_size: int, count: int, seed: int) -> np.ndarray:
    """``count`` uint8 HR patches (count, hr_size, hr_size, 3): each picks a photo uniformly, then a top-left
    corner uniformly among that photo's valid positions (so small photos are not under-sampled, and large ones
    do not dominate). ``hr_size`` must be a multiple of :data:`PATCH_MULTIPLE` and fit in every photo."""
    hr_size = _positive_int("random_patches: hr_size", hr_size)
    count = _positive_int("random_patches: count", count)
    if hr_size % PATCH_MULTIPLE:
        raise PatchError(f"random_patches: hr_size {hr_size} must be a multiple of {PATCH_MULTIPLE}, so that "
                         f"x{'/x'.join(map(str, SCALES))} all give whole LR patches (e.g. 48, 96, 192)")
    if not images:
        raise PatchError("random_patches: no photos to cut patches from")
    for i, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise PatchError(f"random_patches: photo {i} must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        if min(image.shape[:2]) < hr_size:
            raise PatchError(f"random_patches: photo {i} is {image.shape[0]}x{image.shape[1]}, smaller than "
                             f"hr_size {hr_size}")
    rng = np.random.default_rng(seed)
    which = rng.integers(len(images), size=count)
    out = np.empty((count, hr_size, hr_size, 3), dtype=np.uint8)
    for k, i in enumerate(which):
        height, width = images[i].shape[:2]
        top = rng.integers(height - hr_size + 1)
        left = rng.integers(width - hr_size + 1)
        out[k] = images[i][top:top + hr_size, left:left + hr_size]
    return out


def lr_of(hr: np.ndarray | Tensor, scale: int) -> np.ndarray | Tensor:
    """The LR version of HR images by MATLAB-style bicubic downscaling by ``1 / scale``
    (:func:`repflow.families.sr.imresize.imresize`), quantised to 8 bits as a stored LR image is.

    uint8 arrays (N, H, W, 3) or (H, W, 3) → uint8 arrays of the same layout; float tensors (N, 3, H, W) in
    [0, 1] → float tensors in [0, 1] holding multiples of 1/255. H and W must be divisible by ``scale``.
    """
    scale = _positive_int("lr_of: scale", scale)
    if isinstance(hr, np.ndarray):
        if hr.dtype != np.uint8 or hr.ndim not in (3, 4) or hr.shape[-1] != 3:
            raise PatchError(f"lr_of: arrays must be uint8 (N, H, W, 3) or (H, W, 3), got {hr.dtype} {hr.shape}")
        batch = torch.from_numpy(np.array(hr if hr.ndim == 4 else hr[None])).permute(0, 3, 1, 2)  # a writable copy
        low = lr_of(batch.to(torch.float32) / 255, scale)
        stored = torch.round(low * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return stored if hr.ndim == 4 else stored[0]
    if not isinstance(hr, Tensor) or not hr.is_floating_point() or hr.ndim != 4 or hr.shape[1] != 3:
        raise PatchError(f"lr_of: tensors must be float (N, 3, H, W) in [0, 1], got "
                         f"{getattr(hr, 'dtype', type(hr).__name__)} {tuple(getattr(hr, 'shape', ()))}")
    height, width = hr.shape[-2:]
    if height % scale or width % scale:
        raise PatchError(f"lr_of: HR size {height}x{width} is not divisible by scale {scale}")
    low = imresize(hr, size=(height // scale, width // scale))
    return torch.round(low.clamp(0, 1) * 255) / 255
