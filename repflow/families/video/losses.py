"""Losses and measures of the video watermarking family, on clips (N, 3, T, H, W) in [0, 1], messages (N, L) in
{0, 1} and message logits (N, L).

The training objective (ItoV, Ye et al., arXiv 2305.02781, 2023: an image watermarker's terms plus its frame
loss) is λ_img·fidelity + λ_msg·message + λ_adv·adversarial + λ_f·frame;
HiDDeN's weights are λ_img 0.7, λ_msg 1, λ_adv 1e-3. HiDDeN regresses the decoded message with MSE; here the
decoder emits logits and the message loss is binary cross-entropy on them (a choice: the bits are binary,
and the loss keeps pushing a bit that is right but barely so).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["frame_errors", "frame_loss", "fidelity_loss", "message_loss", "bit_accuracy", "frame_psnr",
           "frame_psnr_summary", "critic_loss", "adversarial_loss"]

PSNR_EPS = 1e-10
"""Floor on a frame's MSE in :func:`frame_psnr`: an untouched frame reads 100 dB instead of infinity."""


def _check_pair(watermarked: torch.Tensor, clip: torch.Tensor) -> None:
    if watermarked.shape != clip.shape or clip.dim() != 5:
        raise ValueError(f"watermarked and clip must be the same (N, C, T, H, W) shape, got "
                         f"{tuple(watermarked.shape)} and {tuple(clip.shape)}")


def frame_errors(watermarked: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """(N, T): e_t = ‖V_w[:, :, t] − V[:, :, t]‖² / (C·H·W) per clip, the mean squared error of each frame."""
    _check_pair(watermarked, clip)
    return (watermarked - clip).square().mean(dim=(1, 3, 4))


def frame_loss(watermarked: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """ItoV's frame loss, scalar: (1/T) Σ_t (e_t − ē)² / sg(ē)² with e_t the per-frame MSE, ē its mean over the
    clip's frames and sg a stop-gradient, averaged over clips. Zero when every frame carries the same error
    energy; it penalises a watermark that is loud in some frames and faint in others.

    The abstract says only that the loss keeps the watermark intensity consistent across frames. The
    variance over frames of the per-frame MSE is the form inferred here (the method section was not read).
    Dividing it by ē² (a choice here) makes its value the squared coefficient of variation, free of the
    watermark's overall strength (the raw variance is ~1e-8 at 30 dB, so its weight would have to change with
    the strength); for small spreads it is (std of the per-frame PSNR in dB · ln 10 / 10)². The divisor is
    detached because a ratio that is differentiated through its mean is lowered by simply making every frame
    louder: in a first trial the watermark went from 33 to 23 dB PSNR within two epochs without carrying any
    bits.
    """
    errors = frame_errors(watermarked, clip)
    mean = errors.mean(dim=1, keepdim=True)
    scale = mean.detach().square().clamp_min(PSNR_EPS ** 2)
    return ((errors - mean).square().mean(dim=1, keepdim=True) / scale).mean()


def fidelity_loss(watermarked: torch.Tensor, clip: torch.Tensor) -> torch.Tensor:
    """The image loss: MSE between watermarked and original clip over every pixel, scalar."""
    _check_pair(watermarked, clip)
    return F.mse_loss(watermarked, clip)


def message_loss(logits: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the decoded logits (N, L) against the message bits (N, L), mean over bits."""
    if logits.shape != msg.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and message {tuple(msg.shape)} must have the same shape")
    return F.binary_cross_entropy_with_logits(logits, msg.to(logits.dtype))


def bit_accuracy(logits: torch.Tensor, msg: torch.Tensor) -> float:
    """Share of bits decoded right (a bit is 1 where its logit > 0), over all clips and bits; 0.5 is chance."""
    if logits.shape != msg.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and message {tuple(msg.shape)} must have the same shape")
    return ((logits > 0) == (msg > 0.5)).float().mean().item()


def frame_psnr(watermarked: torch.Tensor, clip: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(N, T) PSNR in dB of each frame of the watermarked clip against the original: 10·log10(range² / e_t),
    with e_t floored at :data:`PSNR_EPS`. Compute on clamped clips to measure what would be saved."""
    errors = frame_errors(watermarked, clip).clamp_min(PSNR_EPS)
    return 10 * torch.log10(data_range ** 2 / errors)


def frame_psnr_summary(watermarked: torch.Tensor, clip: torch.Tensor, data_range: float = 1.0) -> dict[str, float]:
    """What the frame loss should improve, in dB: ``mean`` (over clips and frames), ``std`` (the spread over a
    clip's frames, population std, averaged over clips) and ``min`` (the worst frame of any clip)."""
    psnr = frame_psnr(watermarked, clip, data_range)
    return {"mean": psnr.mean().item(), "std": psnr.std(dim=1, correction=0).mean().item(),
            "min": psnr.min().item()}


def critic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The critic's loss (HiDDeN's discriminator, BCE): original clips labelled 0, watermarked clips 1.
    Pass the watermarked clips' logits computed on detached clips so the encoder is not updated by it."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.zeros_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits)))


def adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The encoder's adversarial loss: BCE pushing the critic to call watermarked clips original (label 0)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
