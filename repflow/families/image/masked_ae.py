"""Masked autoencoding as a generative pretext task (He et al. 2022, 'Masked Autoencoders Are Scalable
Vision Learners', CVPR), on the image family's shared encoder.

One batch, for a view x (N, C, H, W) in [0, 1] split into L = (H/p)·(W/p) patches of p×p pixels:

1. random masking (MAE §3 "Masking"): per image, a uniformly random subset of ⌊L·(1 − ratio)⌋ patches
   is kept and the rest masked; drawn as MAE's code does, by sorting per-patch uniform noise, here from
   the training loop's ``torch.Generator`` so the masks are reproducible;
2. encode the masked image x ⊙ (1 − M) with the SAME encoder every method trains (any ``build_encoder``
   encoder), giving its pooled code h (N, out_dim);
3. decode x̂ = D(h) (N, C, H, W) with a small transposed-conv decoder
(:class:`repflow.families.image.models.decoders.ConvDecoder`);
4. loss (MAE eq. in §3 "Reconstruction target"): the mean squared error over the pixels of the MASKED
   patches only, L = Σ_i Σ_{l masked} ‖x̂_il − t_il‖² / (p²C · #masked), t = the view's pixels.

Targets are raw pixels by default (``norm_pix=False``). MAE's per-patch normalised target (t = (x − mean_l)
/ std_l, its ``norm_pix_loss``) helped its ViTs; it is an option here but not the default because on
28×28 Fashion-MNIST most 4×4 patches are flat background, whose std is ~0, so the normalised target
amplifies noise there, and a loss in pixel units is what the mean-patch baseline is measured in.

Differences from MAE, by design of the family's single encoder:

- the encoder is a CNN with a pooled (N, out_dim) code, not a ViT producing one token per patch: the
  decoder gets one vector per image, not per-patch tokens plus mask tokens;
- masked pixels are ZERO-FILLED and the whole image is encoded, not dropped from the encoder's input (a
  CNN needs the full grid), so the encoder pays for the masked pixels and cannot tell a masked patch
  from a black one (on Fashion-MNIST, the background);
- batch norm in the encoder sees masked images during training and whole images at probing time.

The decoder is discarded after training; only the encoder is evaluated.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from repflow.families.image.contrastive import TRAIN_METHODS, PretextHead, TrainMethod
from repflow.families.image.models.decoders import ConvDecoder

__all__ = ["MaskedAutoencoderHead", "patchify", "random_patch_mask", "masked_patch_mse"]


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(N, C, H, W) → (N, L, C·p·p), patches in row-major order; H and W must be multiples of ``patch``."""
    n, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}x{w} is not a whole number of {patch}x{patch} patches")
    x = x.reshape(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(n, (h // patch) * (w // patch), c * patch * patch)


def random_patch_mask(n: int, num_patches: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(n, L) float mask, 1 = masked: per row, all but ⌊L·(1 − ratio)⌋ randomly chosen patches (MAE's
    ``random_masking``: the patches with the smallest uniform noise are kept)."""
    keep = int(num_patches * (1 - ratio))
    noise = torch.rand(n, num_patches, generator=generator)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return (ranks >= keep).float()


def masked_patch_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, patch: int,
                     norm_pix: bool = False) -> torch.Tensor:
    """MAE's loss: per-patch MSE of ``prediction`` against ``target`` (both (N, C, H, W)), averaged over the
    patches where ``mask`` (N, L) is 1. ``norm_pix``: the target patch is normalised by its own mean and
    std first (MAE's ``norm_pix_loss``)."""
    pred, tgt = patchify(prediction, patch), patchify(target, patch)
    if norm_pix:
        mean, var = tgt.mean(dim=-1, keepdim=True), tgt.var(dim=-1, keepdim=True)
        tgt = (tgt - mean) / (var + 1e-6).sqrt()
    per_patch = (pred - tgt).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


class MaskedAutoencoderHead(PretextHead):
    """Decoder + masking for an encoder of ``in_dim`` features on ``image_shape`` (C, H, W) images.

    ``patch``: patch side p in pixels (H and W multiples of p; 4 gives 7×7 patches on 28 px, 8×8 on 32 px);
    ``mask_ratio``: share of patches masked (MAE's 0.75); ``norm_pix``: per-patch normalised targets;
    ``width``: decoder channels. Uses only the first view: the configured augmentation of the training
    loop (the official MAE augments with random resized crop + flip only).
    """

    def __init__(self, in_dim: int, image_shape: tuple[int, int, int], *, patch: int = 4, mask_ratio: float = 0.75,
                 norm_pix: bool = False, width: int = 32):
        super().__init__()
        c, h, w = image_shape
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
        self.decoder = ConvDecoder(in_dim, self.image_shape, width=width)

    def pixel_mask(self, patch_mask: torch.Tensor) -> torch.Tensor:
        """(N, L) patch mask → (N, 1, H, W) pixel mask (1 = masked)."""
        _, h, w = self.image_shape
        grid = patch_mask.view(-1, 1, h // self.patch, w // self.patch)
        return grid.repeat_interleave(self.patch, dim=2).repeat_interleave(self.patch, dim=3)

    def reconstruct(self, encoder: nn.Module, x: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """x̂ = D(E(x ⊙ (1 − M))): the decoder's image from the zero-filled masked image."""
        visible = x * (1 - self.pixel_mask(patch_mask).to(x.device))
        return self.decoder(encoder(visible))

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
    summary="masked-patch reconstruction: 75% of 4x4 patches zero-filled, the encoder's pooled code decoded to "
            "the image, MSE on the masked patches only (unlike MAE: CNN encoder, masked pixels zero-filled, "
            "not dropped)"))
