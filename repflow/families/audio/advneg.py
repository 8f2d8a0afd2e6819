"""Adversarial positional negatives for audio SSL ("Enhancing Unsupervised Audio Representation Learning via
Adversarial Sample Generation", arXiv 2303.08561).

The paper's argument: a CNN detects patterns in a spectrogram and pools them, so it overlooks *where* they
sit, yet on a spectrogram position is meaning (vertical = frequency, horizontal = time). Its mechanism:
generate adversarial samples, use them as negatives, and drive their embeddings away from the anchor's.
The paper's exact generator and loss were not readable (only its abstract and the start of its introduction;
no official code), so this is a formulation of ours consistent with the abstract:

1. **Candidates** A(x): positional changes that change meaning — frequency shifts by whole mel bins (up
   and down, the vacated rows filled with the clip's own mirrored edge, no constant band), time reversal,
   and reordering of the time blocks that hold sound (a reorder of silence would be the anchor itself).
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

__all__ = ["frequency_shift", "time_reverse", "block_reorder", "sounding_blocks", "sounding_reorder",
           "positional_candidates", "hardest_negatives", "nt_xent_with_negatives", "position_sensitivity"]


def frequency_shift(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Move every clip's content ``bins`` mel bins up (> 0) or down (< 0) on (N, 1, F, T), 0 < |bins| < F.

    The vacated rows are the clip's own edge rows mirrored (reflect padding, then a crop back to F rows):
    row ``bins − 1 − j`` of an up-shift holds source row ``j + 1``. Why reflect: a constant fill (the clip's
    minimum, as before) leaves a flat band that alone marks a clip as shifted, so the negatives and the
    sensitivity score could be told apart by band detection rather than by position; wrapping would put the
    clip's far edge (e.g. fricative noise at the top) next to its near edge, a seam of unrelated content.
    Reflection continues the level and texture found at the edge, so the filled rows vary as the clip does.
    """
    f = x.shape[-2]
    if not -f < bins < f:
        raise ValueError(f"frequency shift of {bins} mel bins; must be within ±{f - 1} (the patch has {f} rows)")
    if bins == 0:
        return x.clone()
    if bins > 0:
        return F.pad(x, (0, 0, bins, 0), mode="reflect")[..., :f, :]
    return F.pad(x, (0, 0, 0, -bins), mode="reflect")[..., -bins:, :]


def time_reverse(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def _block_bounds(frames: int, blocks: int) -> list[int]:
    return [round(i * frames / blocks) for i in range(blocks + 1)]


def block_reorder(x: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """Cut the time axis into ``len(order)`` near-equal blocks and put them back in ``order``."""
    bounds = _block_bounds(x.shape[-1], len(order))
    blocks = [x[..., bounds[i]:bounds[i + 1]] for i in range(len(order))]
    return torch.cat([blocks[i] for i in order], dim=-1)


def sounding_blocks(x: torch.Tensor, blocks: int, threshold: float = 0.5) -> torch.Tensor:
    """Which time blocks of each clip hold sound: (N, blocks) bool for x (N, 1, F, T).

    A frame's level is its mean log-mel over frequency; a block holds sound when its loudest frame reaches
    ``threshold`` of the way from the clip's quietest frame to its loudest (0.5: half-way on the log scale,
    so a silent block of a word padded with silence stays below it). A clip whose frames all have the same
    level has no sounding block: there is no quiet part to tell from a loud one, and a reorder of a
    stationary clip would be a copy of it.
    """
    level = x.mean(dim=(1, 2))  # (N, T)
    lo, hi = level.amin(1, keepdim=True), level.amax(1, keepdim=True)
    bounds = _block_bounds(x.shape[-1], blocks)
    peak = torch.stack([level[:, bounds[i]:bounds[i + 1]].amax(1) for i in range(blocks)], dim=1)
    return (peak >= lo + threshold * (hi - lo)) & (hi > lo)


def _derangement(n: int, g: torch.Generator) -> list[int]:
    """A random order of n ≥ 2 items that moves every one (so no candidate is partly the anchor itself)."""
    while True:
        order = torch.randperm(n, generator=g).tolist()
        if all(i != j for i, j in enumerate(order)):
            return order


def sounding_reorder(x: torch.Tensor, g: torch.Generator, *, blocks: int = 4, threshold: float = 0.5
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip, the sounding blocks (:func:`sounding_blocks`) put in a random order that moves each of them;
    silent blocks stay where they are. Returns (reordered (N, 1, F, T), valid (N,) bool): a clip with fewer
    than 2 sounding blocks has no reorder that changes its sound, so its copy is returned and marked invalid.
    Why: a reorder that only moves silence is a near-copy of the anchor, and pushing it away as a negative
    teaches the encoder to separate a clip from itself."""
    sounding = sounding_blocks(x, blocks, threshold)
    out, valid = x.clone(), torch.zeros(len(x), dtype=torch.bool)
    for i in range(len(x)):
        loud = sounding[i].nonzero().flatten().tolist()
        if len(loud) < 2:
            continue
        order = list(range(blocks))
        for src, dst in zip(loud, _derangement(len(loud), g)):
            order[src] = loud[dst]
        out[i] = block_reorder(x[i], order)
        valid[i] = True
    return out, valid


def positional_candidates(x: torch.Tensor, g: torch.Generator, *, shifts: Sequence[int] = (8, 12, 16),
                          reorders: int = 2, blocks: int = 4, sound_threshold: float = 0.5
                          ) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """All candidate negatives of a batch: (N, K, 1, F, T), the K transform names, and which are valid (N, K).

    K = 2·len(shifts) (each shift up and down) + 1 (time reversal) + ``reorders`` block reorders of the
    sounding blocks (:func:`sounding_reorder`, drawn per clip from ``g``). Names: ``freq+12``, ``reverse``,
    ``reorder``. Only reorders can be invalid (a clip with fewer than 2 sounding blocks).
    """
    made, names, valid = [], [], []
    every = torch.ones(len(x), dtype=torch.bool)
    for s in shifts:
        for signed in (s, -s):
            made.append(frequency_shift(x, signed))
            names.append(f"freq{signed:+d}")
            valid.append(every)
    made.append(time_reverse(x))
    names.append("reverse")
    valid.append(every)
    for _ in range(reorders):
        moved, ok = sounding_reorder(x, g, blocks=blocks, threshold=sound_threshold)
        made.append(moved)
        names.append("reorder")
        valid.append(ok)
    return torch.stack(made, dim=1), names, torch.stack(valid, dim=1).to(x.device)


@torch.no_grad()
def hardest_negatives(embed: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, candidates: torch.Tensor,
                      k: int, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` valid candidates per anchor the encoder is most blind to.

    ``embed``: (M, 1, F, T) → (M, d); ``x``: anchors (N, 1, F, T); ``candidates``: (N, K, 1, F, T);
    ``valid``: (N, K) bool, None = all valid. Returns (negatives (N, k, 1, F, T), their indices (N, k), the
    similarity matrix cos(f(x), f(A_j(x))) (N, K), −inf where invalid). Embedded without gradients and as
    given (the caller sets train/eval mode). Every anchor needs at least ``k`` valid candidates.
    """
    n, kk = candidates.shape[:2]
    if not 1 <= k <= kk:
        raise ValueError(f"k = {k} negatives per anchor; must be in 1..{kk} (the number of candidates)")
    if valid is not None and int(valid.sum(1).min()) < k:
        raise ValueError(f"k = {k} negatives per anchor, but an anchor has only {int(valid.sum(1).min())} valid "
                         "candidates")
    z = F.normalize(embed(x), dim=1)
    zc = F.normalize(embed(candidates.flatten(0, 1)), dim=1).view(n, kk, -1)
    sim = torch.einsum("nd,nkd->nk", z, zc)
    if valid is not None:
        sim = sim.masked_fill(~valid.to(sim.device), float("-inf"))
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
