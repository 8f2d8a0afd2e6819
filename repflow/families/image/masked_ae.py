"""Masked autoencoding as a generative pretext task (He et al. 2022, 'Masked Autoencoders Are Scalable
Vision Learners', CVPR), on the image family's shared encoder, with a spatial code and a per-patch decoder
as CNN adaptations of MAE do (SparK: Tian et al. 2023; ConvMAE: Gao et al. 2022).

One batch, for a view x (N, C, H, W) in [0, 1] split into L = (H/p)·(W/p) patches of p×p pixels:

1. random masking (MAE §3 "Masking"): per image, a uniformly random subset of ⌊L·(1 − ratio)⌋ patches is
   kept and the rest masked (M = 1 on masked patches); drawn as MAE's ``random_masking`` does, by sorting
   per-patch uniform noise, here from the training loop's ``torch.Generator`` so masks are reproducible;
2. the masked image x̃ = x ⊙ (1 − M) + m ⊙ M, m = the encoder's own input mean (its normaliser's mean, so a
   masked pixel is 0 after normalisation, as SparK's empty positions are), goes through the SAME encoder
   trunk every method trains, up to its spatial feature map F = E_spatial(x̃) (N, D, h, w): the
   map the encoder's global average pool would reduce to its code, taken before the pool;
3. MAE's decoder, reduced to a per-patch MLP (:class:`~repflow.families.image.models.decoders.PatchDecoder`):
   F brought to the patch grid, plus a learned position embedding, each position decoded to its patch's
   C·p² pixels: ŷ = D(F) (N, L, C·p²);
4. loss (MAE §3 "Reconstruction target"): the mean squared error over the MASKED patches only,
   L = Σ_i Σ_{l: M_il = 1} ‖ŷ_il − t_il‖² / (C·p² · Σ M), t = patchify(x) (``norm_pix``: each target patch
   normalised by its own mean and std, MAE's ``norm_pix_loss``).

Choices, each against MAE's released code (facebookresearch/mae, ``main_pretrain.py``, ``models_mae.py``):

- ``mask_ratio`` 0.75: MAE's default.
- ``patch``: default H/4 × W/4 pixels (7 on 28×28, 8 on 32×32), a 4×4 grid of 16 patches, because the
  family's encoders end on a 4×4 map at these sizes (three stride-2 stages), so each feature position decodes
  exactly one patch, as each MAE token decodes its own (MAE: 14×14 patches of 16 px on 224 px). At 0.75, 4 of
  16 patches are visible.
- ``norm_pix`` off: the argparse default of MAE's released ``main_pretrain.py`` (its README's pre-training
  recipe turns it on for ViTs on ImageNet). On 28×28 Fashion-MNIST many patches are flat background whose
  std is ~0, where a normalised target amplifies noise; the raw target is in the pixel units the
  reconstruction probe measures.
- masked patches are FILLED, not dropped: a CNN needs the full grid (MAE's ViT encoder sees only the visible
  tokens). Filling with the normaliser's mean rather than 0 keeps a masked patch apart from the black
  background of Fashion-MNIST. The encoder still pays for the masked pixels, its receptive fields cross from
  visible into masked patches (SparK's sparse convolutions prevent that; not done here), and its batch norm
  sees masked images in training and whole images when probed.
- the decoder is a per-patch MLP, not MAE's 8-block transformer: the encoder's receptive field, not the
  decoder, carries the context from the visible patches to a masked one.

The decoder is discarded after training; the saved encoder is the ordinary encoder, whose pooled code the
probes read as for every other method.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from repflow.families.image.contrastive import TRAIN_METHODS, PretextHead, TrainMethod
from repflow.families.image.models.decoders import PatchDecoder

__all__ = ["MaskedAutoencoderHead", "patchify", "unpatchify", "random_patch_mask", "masked_patch_mse",
           "spatial_features"]

GRID = 4
"""Default patches per image side: the side of the family's encoders' last feature map on 28–32 px images."""


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) → (N, L, C·p·p), patches in row-major order; H and W must be multiples of ``patch``."""
    n, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}x{w} is not a whole number of {patch}x{patch} patches")
    x = x.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(patches: torch.Tensor, patch: int, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: (N, L, C·p·p) → (N, C, H, W)."""
    c, h, w = image_shape
    x = patches.reshape(-1, h // patch, w // patch, c, patch, patch)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(-1, c, h, w)


def random_patch_mask(n: int, num_patches: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(n, L) float mask, 1 = masked: per row, all but ⌊L·(1 − ratio)⌋ randomly chosen patches (MAE's
    ``random_masking``: the patches with the smallest uniform noise are kept)."""
    keep = int(num_patches * (1 - ratio))
    noise = torch.rand(n, num_patches, generator=generator)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return (ranks >= keep).float()


def masked_patch_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, patch: int,
                     norm_pix: bool = False) -> torch.Tensor:
    """MAE's loss: per-patch MSE of ``prediction`` against ``target`` (both (N, C, H, W); the prediction
    in normalised units when ``norm_pix``), averaged over the patches where ``mask`` (N, L) is 1.
    ``norm_pix``: the target patch is normalised by its own mean and std first (MAE's ``norm_pix_loss``)."""
    pred, tgt = patchify(prediction, patch), patchify(target, patch)
    if norm_pix:
        mean, var = tgt.mean(dim=-1, keepdim=True), tgt.var(dim=-1, keepdim=True)
        tgt = (tgt - mean) / (var + 1e-6).sqrt()
    per_patch = (pred - tgt).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


def _trunk(encoder: nn.Module) -> nn.Module:
    """The encoder itself, or the module a data-parallel wrapper holds."""
    return getattr(encoder, "module", encoder)


def spatial_features(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's feature map before its global pool, (N, D, h, w): the input of ``encoder.pool``,
    captured while the encoder runs as it always does (so every layer, buffer and batch-norm update is
    that of the ordinary forward pass). Any encoder of :data:`~repflow.families.image.models.ENCODERS`
    ends in such a ``pool``."""
    pool = getattr(_trunk(encoder), "pool", None)
    if not isinstance(pool, nn.Module):
        raise ValueError(f"masked_ae needs an encoder that ends in a global `pool` module; "
                         f"{type(_trunk(encoder)).__name__} has none")
    captured: list[torch.Tensor] = []
    handle = pool.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        encoder(x)
    finally:
        handle.remove()
    return captured[-1]


class MaskedAutoencoderHead(PretextHead):
    """Masking + the per-patch decoder for an encoder of ``in_dim`` feature channels on ``image_shape``
    (C, H, W) images.

    ``patch``: patch side p in pixels (H and W multiples of p); None: H/4 × W/4 (see the module notes);
    ``mask_ratio``: share of patches masked (MAE's 0.75); ``norm_pix``: per-patch normalised targets;
    ``width``: the decoder MLP's hidden channels. Uses only the first view: the configured augmentation of
    the training loop (the official MAE augments with random resized crop + flip only).
    """

    def __init__(self, in_dim: int, image_shape: tuple[int, int, int], *, patch: int | None = None,
                 mask_ratio: float = 0.75, norm_pix: bool = False, width: int = 64):
        super().__init__()
        c, h, w = image_shape
        if patch is None:
            if h != w or h % GRID:
                raise ValueError(f"masked_ae patch: the default (a {GRID}x{GRID} grid) needs a square image whose "
                                 f"side is a multiple of {GRID}, got {h}x{w}; set patch to a divisor of both sides")
            patch = h // GRID
        if patch < 1 or h % patch or w % patch:
            raise ValueError(f"masked_ae patch = {patch}: must divide the image height and width ({h}x{w})")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"masked_ae mask_ratio = {mask_ratio}: must be in (0, 1)")
        self.in_dim, self.image_shape = in_dim, (c, h, w)
        self.patch, self.mask_ratio, self.norm_pix, self.width = patch, mask_ratio, norm_pix, width
        self.num_patches = (h // patch) * (w // patch)
        kept = int(self.num_patches * (1 - mask_ratio))
        if not 1 <= kept < self.num_patches:
            raise ValueError(f"masked_ae mask_ratio = {mask_ratio}: keeps {kept} of {self.num_patches} patches; "
                             "at least one must be kept and one masked")
        self.decoder = PatchDecoder(in_dim, (h // patch, w // patch), c * patch * patch, width=width)

    def pixel_mask(self, patch_mask: torch.Tensor) -> torch.Tensor:
        """(N, L) patch mask → (N, 1, H, W) pixel mask (1 = masked)."""
        _, h, w = self.image_shape
        grid = patch_mask.view(-1, 1, h // self.patch, w // self.patch)
        return grid.repeat_interleave(self.patch, dim=2).repeat_interleave(self.patch, dim=3)

    def masked_input(self, encoder: nn.Module, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """x̃ = x ⊙ (1 − M) + m ⊙ M, m = the encoder's normaliser mean (0.5 when it has none)."""
        normalize = getattr(_trunk(encoder), "normalize", None)
        fill = normalize.mean if isinstance(getattr(normalize, "mean", None), torch.Tensor) else 0.5
        m = self.pixel_mask(patch_mask).to(x.device)
        return x * (1 - m) + fill * m

    def predict_patches(self, encoder: nn.Module, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """ŷ = D(E_spatial(x̃)): (N, L, C·p·p), one prediction per patch, masked or not."""
        return self.decoder(spatial_features(encoder, self.masked_input(encoder, x, patch_mask)))

    def reconstruct(self, encoder: nn.Module, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """The predictions as an image (N, C, H, W) (normalised-pixel units when ``norm_pix``)."""
        return unpatchify(self.predict_patches(encoder, x, patch_mask), self.patch, self.image_shape)

    def loss(self, encoder: nn.Module, v1: torch.Tensor, v2: torch.Tensor, *,
             generator: torch.Generator) -> torch.Tensor:
        mask = random_patch_mask(len(v1), self.num_patches, self.mask_ratio, generator).to(v1.device)
        return masked_patch_mse(self.reconstruct(encoder, v1, mask), v1, mask, self.patch, self.norm_pix)

    def config(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "image_shape": list(self.image_shape),
                "options": {"patch": self.patch, "mask_ratio": self.mask_ratio, "norm_pix": self.norm_pix,
                            "width": self.width}}


TRAIN_METHODS.register("masked_ae", TrainMethod(
    paradigm="generative", losses=("ntxent",), pretext=MaskedAutoencoderHead,
    paper="He et al. 2022, 'Masked Autoencoders Are Scalable Vision Learners' (CVPR)",
    summary="masked autoencoder on a CNN: 75% of a 4x4 patch grid filled with the input mean, the encoder's "
            "spatial feature map decoded per patch, MSE on the masked patches only (unlike MAE: CNN encoder, "
            "masked patches filled, not dropped; per-patch MLP decoder)"))
