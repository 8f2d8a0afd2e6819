"""The audio family's self-supervised training loop and its methods (``audio.train.method``).

``baseline``: SimCLR's NT-Xent between two BYOL-A views (mixup + random resize crop) of each clip.
``advneg``: the same, plus each clip's adversarial positional negatives (:mod:`.advneg`) in the
denominator. Both start from the same initial weights for a given seed and see the same batches and the
same view draws; advneg only adds its negatives (drawn from a separate generator, so the shared draws
stay aligned).

One difference from BYOL-A, named: BYOL-A trains with BYOL (no negatives), and a negative-sample loss
needs a contrastive objective, so the baseline here is SimCLR on BYOL-A's augmentations and encoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from repflow.families.audio.advneg import hardest_negatives, nt_xent_with_negatives, positional_candidates
from repflow.families.audio.augment import byol_a_view
from repflow.progress import progress
from repflow.registry import Listed, Registry

__all__ = ["AudioMethod", "AUDIO_METHODS", "train_audio_ssl", "method_views", "embed_clips"]


@dataclass(frozen=True, kw_only=True)
class AudioMethod(Listed):
    """``negatives``: the method adds adversarial positional negatives."""

    negatives: bool = False


AUDIO_METHODS: Registry[AudioMethod] = Registry("audio training method")
AUDIO_METHODS.register("baseline", AudioMethod(
    paradigm="contrastive",
    paper="Chen et al. 2020, 'A Simple Framework for Contrastive Learning of Visual Representations' (ICML), with "
          "the augmentations and encoder of Niizumi et al. 2021, 'BYOL for Audio' (IJCNN)",
    summary="NT-Xent between two BYOL-A views (mixup + random resize crop) of a log-mel patch"))
AUDIO_METHODS.register("advneg", AudioMethod(
    paradigm="contrastive", negatives=True,
    paper="2023, 'Enhancing Unsupervised Audio Representation Learning via Adversarial Sample Generation' "
          "(arXiv 2303.08561)",
    summary="the baseline plus positional negatives (frequency shift, time reversal, block reordering) chosen "
            "as the ones the encoder is most blind to, pushed away from their anchor"))


def method_views(x: torch.Tensor, g: torch.Generator, augment: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two views of a batch of clips (N, 1, F, T)."""
    return byol_a_view(x, g, **augment), byol_a_view(x, g, **augment)


def train_audio_ssl(encoder: nn.Module, head: nn.Module, logmel: torch.Tensor, *, method: str, epochs: int,
                    batch_size: int, lr: float, weight_decay: float, temperature: float, augment: dict[str, Any],
                    negatives: dict[str, Any], seed: int, device: torch.device | str = "cpu",
                    on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, Any]]:
    """Train ``encoder`` + ``head`` on normalised log-mel patches (N, 1, F, T); returns one dict per epoch.

    ``negatives`` (advneg only): ``k`` chosen per clip, ``weight`` λ, ``shifts`` (mel bins), ``reorders``,
    ``blocks``, ``sound_threshold`` (which blocks a reorder may move). Batches are ⌊N / batch_size⌋ full ones
    per epoch (NT-Xent and batch norm want full batches).
    Negatives are chosen in the projection space, where the loss compares them with their anchor. Each epoch's
    stats: loss, and for advneg the mean cosine similarity of the chosen negatives' projections to their
    anchors' when chosen (how blind the model is to them), and how often each transform kind was chosen.
    """
    spec = AUDIO_METHODS[method]
    if len(logmel) < 2:
        raise ValueError(f"need at least 2 clips to train contrastively, got {len(logmel)}")
    batch_size = min(batch_size, len(logmel))
    g = torch.Generator().manual_seed(seed)
    g_neg = torch.Generator().manual_seed(seed + 7_919)
    encoder.to(device).train()
    head.to(device).train()
    opt = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr, weight_decay=weight_decay)
    history: list[dict[str, Any]] = []
    for epoch in range(epochs):
        order = torch.randperm(len(logmel), generator=g)
        steps = len(logmel) // batch_size
        total, blind, chosen = 0.0, 0.0, {}
        for b in progress(range(steps), desc=f"{method} epoch {epoch + 1}/{epochs}", unit="batch"):
            x = logmel[order[b * batch_size:(b + 1) * batch_size]].to(device)
            v1, v2 = method_views(x, g, augment)
            neg_views = None
            if spec.negatives:
                cands, names, valid = positional_candidates(
                    x, g_neg, shifts=negatives["shifts"], reorders=negatives["reorders"], blocks=negatives["blocks"],
                    sound_threshold=negatives.get("sound_threshold", 0.5))
                encoder.eval(), head.eval()  # choosing must not move batch-norm statistics (nor drop units)
                neg, idx, sim = hardest_negatives(lambda v: head(encoder(v)), x, cands, negatives["k"], valid)
                encoder.train(), head.train()
                blind += float(sim.gather(1, idx).mean())
                for name, c in zip(names, torch.bincount(idx.flatten().cpu(), minlength=len(names)).tolist()):
                    chosen[name] = chosen.get(name, 0) + c
                neg_views = byol_a_view(neg.flatten(0, 1), g_neg, **augment)  # augmented like the positives
            # one forward pass: positives and negatives share batch-norm statistics, so batch statistics
            # cannot tell them apart
            z = head(encoder(torch.cat([v1, v2] + ([neg_views] if neg_views is not None else []))))
            n = len(x)
            zneg = z[2 * n:].view(n, negatives["k"], -1) if neg_views is not None else None
            loss = nt_xent_with_negatives(z[:n], z[n:2 * n], zneg, temperature=temperature,
                                          weight=negatives.get("weight", 1.0) if spec.negatives else 0.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        stats: dict[str, Any] = {"epoch": epoch + 1, "loss": total / max(steps, 1), "steps": steps}
        if spec.negatives:
            stats["negative_similarity"] = blind / max(steps, 1)
            stats["chosen"] = chosen
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch, stats)
    encoder.eval()
    head.eval()
    return history


@torch.no_grad()
def embed_clips(encoder: nn.Module, logmel: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Representations (N, dim) of normalised log-mel patches (N, 1, F, T), encoder in eval mode."""
    was_training = encoder.training
    encoder.eval()
    out = torch.cat([encoder(logmel[i:i + batch_size]) for i in range(0, len(logmel), batch_size)])
    encoder.train(was_training)
    return out
