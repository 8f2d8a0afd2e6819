"""Training a video watermarker: embed a random L-bit message, pass the clip through a distortion, recover
the message, and keep the watermarked clip close to the original.

Per batch (ItoV, Ye et al., arXiv 2305.02781, 2023: an image watermarker's objective plus its frame loss;
HiDDeN's weights as defaults):

    V_w = E(V, m)                           the watermarked clip
    m̂   = D(N(V_w))                         N: one distortion drawn per batch
    L_E = λ_img·MSE(V_w, V) + λ_msg·BCE(m̂, m) + λ_adv·adv(C(V_w)) + λ_f·L_frame(V_w, V)
    L_C = BCE(C(V), 0) + BCE(C(V_w), 1)     only when a critic is given (λ_adv > 0)

Messages are drawn from the run's own generator, so a seed fixes the batches, the messages and every
distortion's random choices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from repflow.families.video.losses import (adversarial_loss, bit_accuracy, critic_loss, fidelity_loss, frame_loss,
                                           message_loss)
from repflow.families.video.models import Critic, Watermarker
from repflow.progress import progress

__all__ = ["LossWeights", "random_messages", "train_watermarker", "as_float_clips"]


@dataclass(frozen=True)
class LossWeights:
    """λ of each term of the encoder's loss (HiDDeN: image 0.7, message 1, adversarial 1e-3)."""

    fidelity: float = 0.7
    message: float = 1.0
    adversarial: float = 0.0
    frame: float = 0.0


def random_messages(n: int, bits: int, generator: torch.Generator) -> torch.Tensor:
    """(n, bits) float tensor of uniformly random {0, 1} bits."""
    return torch.randint(0, 2, (n, bits), generator=generator).float()


def as_float_clips(clips: torch.Tensor) -> torch.Tensor:
    """uint8 (N, T, H, W, 3) clips, as the shards hold them → float (N, 3, T, H, W) in [0, 1]."""
    if clips.dtype != torch.uint8 or clips.dim() != 5 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be uint8 (N, T, H, W, 3), got {clips.dtype} {tuple(clips.shape)}")
    return clips.permute(0, 4, 1, 2, 3).float().div(255)


def train_watermarker(model: Watermarker, clips: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
                      weights: LossWeights, distortion: nn.Module, seed: int, critic: Critic | None = None,
                      frame_warmup_epochs: int = 0, start_epoch: int = 0, optimizer_state: dict | None = None,
                      on_epoch: Callable[[int, dict, torch.optim.Optimizer], None] | None = None) -> list[dict]:
    """Train ``model`` (and ``critic``, if given) on uint8 (N, T, H, W, 3) ``clips`` for epochs
    ``start_epoch + 1 .. epochs``; returns one dict of epoch means per epoch trained (loss terms, bit
    accuracy through the distortion, watermark PSNR). ``distortion(clip, generator)`` is applied between
    embedding and extraction. The frame loss is off for the first ``frame_warmup_epochs`` epochs: from the
    start it keeps the mark too faint for the decoder to find (bit accuracy 0.50 after 320 steps, against
    0.9+ without it), so the message is learned first and the frame loss then evens it out. Adam at ``lr``
    for both networks; ``optimizer_state`` restores the model's
    optimizer when resuming. ``on_epoch(epoch, stats, optimizer)`` is called after each epoch."""
    if weights.adversarial > 0 and critic is None:
        raise ValueError("an adversarial weight > 0 needs a critic")
    data = as_float_clips(clips)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=lr) if critic is not None else None
    history = []
    for epoch in range(start_epoch + 1, epochs + 1):
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        model.train()
        order = torch.randperm(len(data), generator=generator)
        sums: dict[str, float] = {}
        batches = range(0, len(data), batch_size)
        for start in progress(batches, desc=f"video.train epoch {epoch}/{epochs}", unit="batch"):
            clip = data[order[start:start + batch_size]]
            msg = random_messages(len(clip), model.L, generator)
            marked = model.embed(clip, msg)
            if critic is not None:
                critic.train()
                c_loss = critic_loss(critic(clip), critic(marked.detach()))
                critic_opt.zero_grad()
                c_loss.backward()
                critic_opt.step()
            logits = model.extract(distortion(marked, generator))
            terms = {"fidelity": fidelity_loss(marked, clip), "message": message_loss(logits, msg),
                     "frame": frame_loss(marked, clip)}
            if critic is not None:
                terms["adversarial"] = adversarial_loss(critic(marked))
            frame_on = epoch > frame_warmup_epochs
            loss = sum(getattr(weights, k) * v for k, v in terms.items() if k != "frame" or frame_on)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch = {k: v.item() for k, v in terms.items()} | {"loss": loss.item(),
                                                               "bit_accuracy": bit_accuracy(logits, msg)}
            if critic is not None:
                batch["critic"] = c_loss.item()
            for k, v in batch.items():
                sums[k] = sums.get(k, 0.0) + v * len(clip)
        stats = {k: v / len(data) for k, v in sums.items()}
        stats["psnr"] = -10.0 * torch.log10(torch.tensor(max(stats["fidelity"], 1e-10))).item()
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch, stats, optimizer)
    return history
