"""Adversarial positional negatives for audio SSL ("Enhancing Unsupervised Audio Representation Learning via
Adversarial Sample Generation", arXiv 2303.08561).

The paper's argument: a CNN detects patterns in a spectrogram and pools them, so it overlooks *where* they
sit, yet on a spectrogram position is meaning (vertical = frequency, horizontal = time). Its mechanism:
generate adversarial samples, use them as negatives, and drive their embeddings away from the anchor's.
The paper's exact generator and loss were not readable (only its abstract and the start of its introduction;
no official code), so this is a formulation of ours consistent with the abstract:

1. **Candidates** A(x): positional changes that change meaning — frequency shifts by at least
   ``min_shift`` mel bins (up and down), time reversal, and reordering of time blocks.
2. **Adversarial choice**: per anchor, the ``k`` candidates the current model is most blind to, i.e.
   with the highest cosine similarity cos(z(x), z(A(x))) of their projections z = g(f(·)), where the loss
   compares them (a search over a discrete transform set, the inner max of a min–max game).
3. **Loss**: NT-Xent whose denominator for anchor i also holds its chosen negatives (weight λ):

       L_i = −log  e^{s(z_i, z_i⁺)/τ} / ( Σ_{b ≠ i} e^{s(z_i, z_b)/τ} + λ Σ_j e^{s(z_i, z⁻_ij)/τ} )

   With λ = 0 it is exactly the baseline's NT-Xent.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["frequency_shift", "time_reverse", "block_reorder", "positional_candidates", "hardest_negatives",
           "nt_xent_with_negatives", "position_sensitivity"]


def frequency_shift(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Move every clip's content ``bins`` mel bins up (> 0) or down (< 0) on (N, 1, F, T); the vacated rows
    are filled with each clip's minimum (silence), not wrapped round."""
    if bins == 0:
        return x.clone()
    floor = x.amin(dim=(1, 2, 3), keepdim=True).expand_as(x)
    out = floor.clone()
    if bins > 0:
        out[:, :, bins:] = x[:, :, :-bins]
    else:
        out[:, :, :bins] = x[:, :, -bins:]
    return out


def time_reverse(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def block_reorder(x: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """Cut the time axis into ``len(order)`` near-equal blocks and put them back in ``order``."""
    bounds = [round(i * x.shape[-1] / len(order)) for i in range(len(order) + 1)]
    blocks = [x[..., bounds[i]:bounds[i + 1]] for i in range(len(order))]
    return torch.cat([blocks[i] for i in order], dim=-1)


def _derangement(n: int, g: torch.Generator) -> list[int]:
    """A random block order that moves every block (so no candidate is partly the anchor itself)."""
    while True:
        order = torch.randperm(n, generator=g).tolist()
        if all(i != j for i, j in enumerate(order)):
            return order


def positional_candidates(x: torch.Tensor, g: torch.Generator, *, shifts: Sequence[int] = (8, 12, 16),
                          reorders: int = 2, blocks: int = 4) -> tuple[torch.Tensor, list[str]]:
    """All candidate negatives of a batch: (N, K, 1, F, T) and the K transform names.

    K = 2·len(shifts) (each shift up and down) + 1 (time reversal) + ``reorders`` random block orders
    (drawn from ``g``, one order per batch, each moving every block). Names: ``freq+12``, ``reverse``,
    ``reorder 2301`` (the new block order).
    """
    made, names = [], []
    for s in shifts:
        for signed in (s, -s):
            made.append(frequency_shift(x, signed))
            names.append(f"freq{signed:+d}")
    made.append(time_reverse(x))
    names.append("reverse")
    for _ in range(reorders):
        order = _derangement(blocks, g)
        made.append(block_reorder(x, order))
        names.append("reorder " + "".join(str(i) for i in order))
    return torch.stack(made, dim=1), names


@torch.no_grad()
def hardest_negatives(embed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, candidates: torch.Tensor,
                      k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` candidates per anchor the encoder is most blind to.

    ``embed``: (M, 1, F, T) → (M, d); ``x``: anchors (N, 1, F, T); ``candidates``: (N, K, 1, F, T).
    Returns (negatives (N, k, 1, F, T), their indices (N, k), the similarity matrix cos(f(x), f(A_j(x)))
    (N, K)). Embedded without gradients and as given (the caller sets train/eval mode).
    """
    n, kk = candidates.shape[:2]
    if not 1 <= k <= kk:
        raise ValueError(f"k = {k} negatives per anchor; must be in 1..{kk} (the number of candidates)")
    z = F.normalize(embed(x), dim=1)
    zc = F.normalize(embed(candidates.flatten(0, 1)), dim=1).view(n, kk, -1)
    sim = torch.einsum("nd,nkd->nk", z, zc)
    idx = sim.topk(k, dim=1).indices
    return candidates[torch.arange(n).unsqueeze(1), idx], idx, sim


def nt_xent_with_negatives(z1: torch.Tensor, z2: torch.Tensor, negatives: torch.Tensor | None, *,
                           temperature: float = 0.1, weight: float = 1.0) -> torch.Tensor:
    """NT-Xent over the 2N views (SimCLR eq. 1) with extra negatives per clip in every anchor's denominator.

    ``z1``, ``z2``: projections of two views, (N, d). ``negatives``: projections of clip i's chosen
    negatives, (N, k, d), shared by both of its views; None or ``weight`` = 0 gives plain NT-Xent.
    ``weight`` λ scales the negatives' terms (added as log λ to their logits).
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.t() / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device),
                                                   float("-inf"))
    if negatives is not None and weight > 0:
        zn = F.normalize(negatives, dim=2)
        zn = torch.cat([zn, zn])  # view 2 of clip i has the same negatives as view 1
        extra = torch.einsum("ad,akd->ak", z, zn) / temperature + math.log(weight)
        logits = torch.cat([logits, extra], dim=1)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, targets)


@torch.no_grad()
def position_sensitivity(embed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         shifts: Sequence[int] = (8, -8, 16, -16), batch_size: int = 256) -> tuple[float, float]:
    """(absolute, relative) sensitivity of an embedding to where content sits in frequency.

    absolute: mean of 1 − cos(f(x), f(shift(x, Δ))) over clips and the frequency shifts Δ (mel bins); 0 = the
    embedding ignores the shift. relative: that mean divided by the mean 1 − cos(f(x), f(x')) between each
    clip and the next one (another clip): 1 = a shift moves the embedding as far as changing the clip does.
    The relative score is comparable across encoders whose embeddings share a large common component
    (non-negative ReLU features all point roughly one way, so every absolute cosine distance is small).
    """
    shifted, other, count = 0.0, 0.0, 0
    z_all = F.normalize(torch.cat([embed(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]), dim=1)
    other = float((1 - (z_all * z_all.roll(1, dims=0)).sum(1)).mean())
    for i in range(0, len(x), batch_size):
        xb, z = x[i:i + batch_size], z_all[i:i + batch_size]
        for s in shifts:
            zs = F.normalize(embed(frequency_shift(xb, s)), dim=1)
            shifted += float((1 - (z * zs).sum(1)).sum())
            count += len(xb)
    absolute = shifted / max(count, 1)
    return absolute, absolute / max(other, 1e-12)
