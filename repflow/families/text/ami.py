"""MLE, MMI reranking and AMI (Pan et al. 2020, "Adversarial Mutual Information for Text Generation", ICML), in
the order a run uses them. Notation: S a source, T its real target, T̃ a generated target, P_θ(T|S) the
forward model, Q_φ(S|T) the backward model, N_ψ the latent-noise model, h the forward encoder's states.

AMI's objective (the saddle point of the paper's abstract; the form is read from the code, not the paper's equation):

    max_θ min_φ  E_{S, T̃∼P_θ(·|S)}[log Q_φ(S|T̃)] − E_{(S,T)}[log Q_φ(S|T)]      (+ MLE terms)   (Eq. AMI)

which rests on the variational bound I(S;T) ≥ H(S) + E_{p(S,T)} log Q_φ(S|T)                   (Eq. MI)

What follows the official code (``ZJULearning/AMI``: ``trainer_nmt.py``, ``onmt/opts.py``) and what differs, named:

- schedule: cycles of ``gm_iter_count`` forward batches (MLE every batch, adversarial every
  ``adversarial_every``-th), ``gm_iter_count`` backward batches (MLE every batch, adversarial every
  ``adversarial_every``-th) and ``noise_batches`` noise batches, as the code; defaults K = 5 samples,
  noise-norm weight 0.1 bounded at 1, forward/backward gradient clip 1.0, as the code's options; the noise
  scale λ defaults to 0.1, not the code's 1.0 (see :class:`AMIConfig`).
- forward step: REINFORCE with reward r = log Q(S|T̃) and a **baseline** (the mean reward of the other
  K − 1 samples of the same source). The code uses no baseline and a teacher-forced argmax T̃ (ŷ_t =
  argmax at each gold-prefix position), which pushes every ŷ down; here T̃ is sampled freely from P_θ on
  the perturbed memory, so the gradient is the policy gradient of E[log Q(S|T̃)].
- backward step: MLE on real pairs plus the demotion of fakes, each weighted by 1 − cos(ē(T), ē(T̃)) (ē
  the mean word embedding), as the code. The fakes T̃ are the forward model's free-running greedy outputs
  on the perturbed memory, where the code takes the teacher-forced argmax (each ŷ_t predicted from the gold
  prefix): ours are what the forward model would actually generate, at the cost of a step-by-step decode
  (a named difference, not yet measured against the code's choice). The fakes' NLL is capped at ``log V``
  (a uniform guess), since maximising an unbounded NLL diverges (the code clips the adversarial weight instead).
- noise step: loss = mean_k [NLL_Q(S | T̂_k) − 0.1·‖ε_k‖·1[‖ε_k‖ ≤ 1]] with ‖ε‖ per example and position
  over the hidden axis (the code's norm runs over the batch axis, a bug). T̂_k is the forward model's
  teacher-forced distribution on the perturbed memory h + λε_k, fed to Q as soft tokens so the NLL has a
  gradient in ε (the code's argmax T̂ has none).
- dropout: every reward, every fake and the noise step are computed with the scoring models in eval mode
  (dropout off: :func:`evaluating`), so a reward is a deterministic function of its inputs and the forward
  step's log P(T̃|S) is that of the distribution T̃ was sampled from (on-policy); only the MLE terms and the
  backward model's demotion of fakes (the terms being trained with dropout, as MLE is) run in train mode.
  The code leaves every model in train mode throughout.
- ablations (:class:`AMIConfig`): ``backward_adversarial=False`` keeps the backward model's MLE batches but
  drops its demotion of fakes; ``noise_step=False`` keeps the schedule but makes the noise batches no-ops
  (the forward step then perturbs with the untrained noise model). Both default on (full AMI).
- nothing is skipped: the code wraps each step in ``try/except: continue``; here an error stops training.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from repflow.families.text.decoding import Hypotheses, beam_search, greedy_decode, sample_decode
from repflow.families.text.models import (LatentNoise, Seq2Seq, decoder_io, lengths_of, noise_norm, pad_batch,
                                          sequence_log_prob)
from repflow.families.text.tokenizer import PAD
from repflow.progress import progress

__all__ = ["Batch", "make_batches", "mle_loss", "train_mle", "mmi_rerank", "mmi_order", "AMIConfig", "ami_phase",
           "forward_adversarial_loss", "backward_adversarial_loss", "noise_loss", "train_ami", "frozen",
           "swap", "evaluating"]

Batch = tuple[torch.Tensor, torch.Tensor]
"""(source (N, S), target (N, T)), padded token rows."""


def swap(pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[list[int], list[int]]]:
    """(source, target) token pairs → (target, source): the backward model's training data."""
    return [(t, s) for s, t in pairs]


def make_batches(pairs: Sequence[tuple[list[int], list[int]]], batch_size: int, generator: torch.Generator,
                 max_len: int | None = None) -> Iterator[Batch]:
    """One epoch of padded batches, pairs shuffled by ``generator`` (the last batch may be smaller); rows longer
    than ``max_len`` tokens are cut."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    order = torch.randperm(len(pairs), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        chunk = [pairs[i] for i in order[start:start + batch_size]]
        yield pad_batch([s for s, _ in chunk], max_len), pad_batch([t for _, t in chunk], max_len)


# ---------------------------------------------------------------------------------------------------------
# MLE: minimise −E_{(S,T)} log P_θ(T|S)                                                          (Eq. MLE)

def mle_loss(model: Seq2Seq, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per target token (the <eos> included), averaged over the batch's tokens."""
    decoder_in, decoder_out, mask = decoder_io(target)
    logits = model.decode(model.encode(source), decoder_in)
    return F.cross_entropy(logits[mask], decoder_out[mask])


def _clipped_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params, max_grad_norm: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()


def train_mle(model: Seq2Seq, pairs: Sequence[tuple[list[int], list[int]]], *, epochs: int, batch_size: int = 64,
              lr: float = 2e-3, max_grad_norm: float = 1.0, max_len: int | None = None, seed: int = 0,
              desc: str = "text MLE") -> list[dict]:
    """Train ``model`` by MLE with Adam for ``epochs`` over ``pairs`` ((source ids, target ids); swap them for
    the backward model). Returns one record per epoch: {"epoch", "loss" (mean token NLL, nats)}. The batch
    order comes from ``seed`` alone."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not pairs:
        raise ValueError("train_mle needs at least one pair")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    n_batches = math.ceil(len(pairs) / batch_size)
    for epoch in range(epochs):
        total, count = 0.0, 0
        for source, target in progress(make_batches(pairs, batch_size, generator, max_len), desc=f"{desc} {epoch + 1}",
                                       unit="batch", total=n_batches):
            loss = mle_loss(model, source, target)
            _clipped_step(optimizer, loss, model.parameters(), max_grad_norm)
            total, count = total + loss.item(), count + 1
        history.append({"epoch": epoch + 1, "loss": total / count})
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------------------
# MMI-bidi reranking (Li et al. 2016): T̂ = argmax_{T ∈ N-best of P} log P(T|S) + λ log Q(S|T) + γ|T|  (Eq. MMI)

@torch.no_grad()
def mmi_order(backward: Seq2Seq, hypotheses: Hypotheses, source: torch.Tensor, *, lam: float = 0.5,
              length_bonus: float = 0.0) -> torch.Tensor:
    """(N, B) the forward N-best ``hypotheses`` of each source reordered by Eq. MMI, best first. λ = 0.5 and
    γ = 0 are choices (the notes give no value; Li et al. tune both on validation data)."""
    n, beam, width = hypotheses.tokens.shape
    candidates = hypotheses.tokens.reshape(n * beam, width)
    backward_lp = sequence_log_prob(backward, candidates, source.repeat_interleave(beam, 0)).reshape(n, beam)
    lengths = lengths_of(candidates).reshape(n, beam).float()
    score = hypotheses.log_prob + lam * backward_lp + length_bonus * lengths
    return score.argsort(dim=1, descending=True, stable=True)


@torch.no_grad()
def mmi_rerank(forward: Seq2Seq, backward: Seq2Seq, source: torch.Tensor, *, n_best: int = 8, lam: float = 0.5,
               length_bonus: float = 0.0, max_len: int = 32) -> torch.Tensor:
    """(N, L) the best of the forward model's N-best (beam search, ``n_best`` = 8 as the notes' plan) by
    Eq. MMI (:func:`mmi_order`)."""
    hypotheses = beam_search(forward, source, beam=n_best, max_len=max_len)
    best = mmi_order(backward, hypotheses, source, lam=lam, length_bonus=length_bonus)[:, 0]
    return hypotheses.tokens[torch.arange(source.shape[0]), best]


# ---------------------------------------------------------------------------------------------------------
# AMI

@dataclass(frozen=True)
class AMIConfig:
    """AMI's knobs; defaults from the official options (``ZJULearning/AMI``, ``onmt/opts.py``) unless said otherwise.

    ``samples`` K (wh_sample_num 5); ``noise_scale`` λ in h + λε: 0.1, not the code's noise_lambda 1.0, because
    σ = softplus(μ) puts a floor under the noise (E ε² per unit = μ² + softplus(μ)² ≥ about 0.39, so ‖ε‖ ≥
    about 0.62·√H: ≈ 7-8 at H = 128 against encoder states of norm ≈ 4), so at λ = 1 the perturbation
    drowns the source (in one exploratory CPU-scale run on WordNet, λ = 1 gave repetitive outputs and a higher
    generic rate than MLE, λ = 0.1 neither). For the same reason 1[‖ε‖ ≤ 1] is false from the start, so the
    norm bonus of the noise step is off unless the noise model shrinks ‖ε‖ below the bound. ``noise_norm_weight``
    and ``noise_norm_bound`` (0.1 and noise_l2 1.0); ``gm_iter_count`` (8), ``adversarial_every`` (2) and
    ``noise_batches`` (4) make the schedule; ``adversarial_weight`` scales the adversarial terms against the
    MLE ones (1.0); ``max_grad_norm`` (fw/bw_adv_w_clip 1.0); ``lr`` of Adam for all three models and
    ``noise_lr`` (a choice: the code uses SGD at 0.01 with max_grad_norm 0.1 for fine-tuning, tuned for its
    large LSTMs); ``max_len`` generated tokens; ``temperature`` of the forward samples (1.0);
    ``backward_adversarial`` and ``noise_step``: the ablation switches (off: no demotion of fakes in the
    backward batches / no update in the noise batches; the schedule is unchanged)."""

    samples: int = 5
    noise_scale: float = 0.1
    noise_norm_weight: float = 0.1
    noise_norm_bound: float = 1.0
    gm_iter_count: int = 8
    adversarial_every: int = 2
    noise_batches: int = 4
    adversarial_weight: float = 1.0
    max_grad_norm: float = 1.0
    lr: float = 2e-4
    noise_lr: float = 1e-3
    max_len: int = 32
    temperature: float = 1.0
    backward_adversarial: bool = True
    noise_step: bool = True

    def __post_init__(self):
        for name in ("samples", "gm_iter_count", "adversarial_every", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AMI {name} must be an int >= 1, got {value!r}")
        if isinstance(self.noise_batches, bool) or not isinstance(self.noise_batches, int) or self.noise_batches < 0:
            raise ValueError(f"AMI noise_batches must be an int >= 0, got {self.noise_batches!r}")
        for name in ("noise_scale", "noise_norm_weight", "noise_norm_bound", "adversarial_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"AMI {name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("max_grad_norm", "lr", "noise_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AMI {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("backward_adversarial", "noise_step"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AMI {name} must be true or false, got {getattr(self, name)!r}")


def ami_phase(batch_index: int, config: AMIConfig) -> tuple[str, bool]:
    """(which model trains on this batch: "forward", "backward" or "noise"; whether its adversarial term is
    on) for the ``batch_index``-th batch (from 0) of AMI's cycle of 2·gm_iter_count + noise_batches."""
    cycle = 2 * config.gm_iter_count + config.noise_batches
    position = batch_index % cycle
    if position >= 2 * config.gm_iter_count:
        return "noise", True
    model = "forward" if position < config.gm_iter_count else "backward"
    return model, (position % config.gm_iter_count) % config.adversarial_every == config.adversarial_every - 1


@contextmanager
def frozen(*modules: torch.nn.Module):
    """Parameters of ``modules`` do not require gradients inside the block (gradients still flow through
    them to their inputs); restored afterwards."""
    params = [p for m in modules for p in m.parameters()]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, saved):
            p.requires_grad_(flag)


@contextmanager
def evaluating(*modules: torch.nn.Module):
    """``modules`` in eval mode (dropout off) inside the block, each restored to its own mode afterwards: how
    AMI scores rewards and fakes and runs the frozen models of the noise step."""
    saved = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, flag in zip(modules, saved):
            m.train(flag)


def _perturbed_memory(forward: Seq2Seq, noise: LatentNoise, source: torch.Tensor, config: AMIConfig,
                      generator: torch.Generator | None, noise_grad: bool = False):
    """(forward memory of each source repeated K times and perturbed h + λε_k, ε) — ε detached unless
    ``noise_grad``."""
    memory = forward.encode(source).repeat(config.samples)
    with torch.set_grad_enabled(noise_grad):
        eps = noise(memory.states.detach(), generator)
    return memory.perturbed(eps, config.noise_scale), eps


def forward_adversarial_loss(forward: Seq2Seq, backward: Seq2Seq, noise: LatentNoise, source: torch.Tensor,
                             config: AMIConfig, generator: torch.Generator | None = None
                             ) -> tuple[torch.Tensor, dict]:
    """The forward model's adversarial term of Eq. AMI, by REINFORCE with a leave-one-out baseline:

        ∇_θ E[log Q(S|T̃)] ≈ mean_{n,k} (r_nk − b_nk) ∇_θ log P_θ(T̃_nk | S_n, h + λε_k),
        r_nk = log Q_φ(S_n | T̃_nk),  b_nk = mean of r_nj over the other samples j ≠ k of source n.

    T̃ is sampled from P on the perturbed memory (K per source). Sampling, the reward and log P all run with
    dropout off (:func:`evaluating`): the reward is a deterministic function of (S, T̃) and log P is that of
    the distribution T̃ came from; the gradient still flows through log P. Returns (the loss to minimise, the
    batch's samples (N·K, L) with their rewards and advantages (N·K,), for inspection)."""
    n, k = source.shape[0], config.samples
    with evaluating(forward, backward, noise):
        memory, _ = _perturbed_memory(forward, noise, source, config, generator)
        samples = sample_decode(forward, memory=memory, max_len=config.max_len, temperature=config.temperature,
                                generator=generator)
        with torch.no_grad():
            reward = sequence_log_prob(backward, samples, source.repeat_interleave(k, 0)).reshape(n, k)
            if k > 1:
                baseline = (reward.sum(dim=1, keepdim=True) - reward) / (k - 1)
            else:
                baseline = reward.mean().expand_as(reward)
            advantage = (reward - baseline).reshape(-1)
        log_p = sequence_log_prob(forward, source, samples, memory=memory)
    loss = -(advantage * log_p).mean()
    return loss, {"samples": samples, "reward": reward.reshape(-1), "advantage": advantage}


def _mean_embedding(model: Seq2Seq, tokens: torch.Tensor) -> torch.Tensor:
    """(N, E) ē(T): the mean of the row's token embeddings (zero for an empty row)."""
    mask = (tokens != PAD).unsqueeze(-1)
    return (model.embedding(tokens) * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def backward_adversarial_loss(backward: Seq2Seq, forward: Seq2Seq, noise: LatentNoise, source: torch.Tensor,
                              target: torch.Tensor, config: AMIConfig, generator: torch.Generator | None = None
                              ) -> tuple[torch.Tensor, dict]:
    """The backward model's adversarial term of Eq. AMI (minimised over φ): demote fakes,

        − mean_{n,k} w_nk · min(NLL_Q(S_n | T̃_nk), log V),   w_nk = 1 − cos(ē(T_n), ē(T̃_nk)),

    NLL per source token, T̃ the forward model's greedy outputs on K perturbed memories (made with dropout
    off; no gradient to the forward or noise model), ē from the backward model's embeddings (detached). The
    NLL of the fakes runs in the backward model's own mode (train mode in :func:`train_ami`: this is its
    update, like its MLE term). The promotion of real pairs is the MLE term the caller adds (:func:`mle_loss`
    on swapped pairs). Returns (loss, {"weight", "fake_nll"})."""
    k = config.samples
    with torch.no_grad(), evaluating(forward, noise):
        memory, _ = _perturbed_memory(forward, noise, source, config, generator)
        fakes = greedy_decode(forward, memory=memory, max_len=config.max_len)
    with torch.no_grad():
        weight = 1 - F.cosine_similarity(_mean_embedding(backward, target).repeat_interleave(k, 0),
                                         _mean_embedding(backward, fakes), dim=-1)
    fake_nll = -sequence_log_prob(backward, fakes, source.repeat_interleave(k, 0), per_token=True)
    capped = fake_nll.clamp(max=math.log(backward.vocab_size))
    return -(weight * capped).mean(), {"weight": weight, "fake_nll": fake_nll.detach()}


def noise_loss(noise: LatentNoise, forward: Seq2Seq, backward: Seq2Seq, source: torch.Tensor, target: torch.Tensor,
               config: AMIConfig, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """The noise model's loss (forward and backward frozen): the largest bounded perturbation that keeps the
    source reconstructable,

        mean_k [ NLL_Q(S | T̂_k) − c·‖ε_k‖·1[‖ε_k‖ ≤ B] ],   T̂_k = softmax of P(·| <bos> T, h + λε_k),

    with ‖ε‖ the per-position hidden-axis norm averaged over positions (:func:`noise_norm`), c =
    ``noise_norm_weight``, B = ``noise_norm_bound``, NLL per source token. The frozen forward and backward
    models run with dropout off (:func:`evaluating`). Returns (loss, {"norm", "nll"})."""
    k = config.samples
    with frozen(forward, backward), evaluating(forward, backward):
        memory, eps = _perturbed_memory(forward, noise, source, config, generator, noise_grad=True)
        target_k = target.repeat_interleave(k, 0)
        decoder_in, _, _ = decoder_io(target_k)
        probs = forward.decode(memory, decoder_in)[:, :-1].softmax(dim=-1)  # the content positions of T
        nll = -sequence_log_prob(backward, None, source.repeat_interleave(k, 0),
                                 memory=backward.encode(target_k, soft=probs), per_token=True)
        norm = noise_norm(eps, memory.mask)
        loss = (nll - config.noise_norm_weight * norm * (norm <= config.noise_norm_bound)).mean()
    return loss, {"norm": norm.detach(), "nll": nll.detach()}


def train_ami(forward: Seq2Seq, backward: Seq2Seq, noise: LatentNoise,
              pairs: Sequence[tuple[list[int], list[int]]], *, steps: int, batch_size: int = 64,
              config: AMIConfig = AMIConfig(), seed: int = 0, max_len: int | None = None,
              desc: str = "AMI") -> list[dict]:
    """AMI fine-tuning of pretrained ``forward`` and ``backward`` models with the noise model, ``steps``
    batches following :func:`ami_phase` (batches drawn from ``pairs`` epoch after epoch, in an order from
    ``seed``; every sample drawn from the same seeded generator). Each forward batch: MLE (+ the adversarial
    term on its turn); each backward batch: MLE on the swapped pair (+ the demotion of fakes on its turn,
    unless ``config.backward_adversarial`` is off); each noise batch: :func:`noise_loss` (a no-op batch,
    recorded with ``"skipped": True``, when ``config.noise_step`` is off). The models stay in train mode for
    the updates; rewards, fakes and the noise step's frozen models run in eval mode (see the module notes).
    Gradients are clipped to ``config.max_grad_norm``. An error in any
    step propagates (nothing is skipped). Returns one record per batch: {"step", "phase", "adversarial",
    "loss", plus the phase's means: "reward" / "fake_nll" / "noise_norm"}."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not pairs:
        raise ValueError("train_ami needs at least one pair")
    generator = torch.Generator().manual_seed(seed)
    optimizers = {"forward": torch.optim.Adam(forward.parameters(), lr=config.lr),
                  "backward": torch.optim.Adam(backward.parameters(), lr=config.lr),
                  "noise": torch.optim.Adam(noise.parameters(), lr=config.noise_lr)}
    modules = {"forward": forward, "backward": backward, "noise": noise}
    for m in modules.values():
        m.train()

    def endless() -> Iterator[Batch]:
        while True:
            yield from make_batches(pairs, batch_size, generator, max_len)

    history, batches = [], endless()
    for step in progress(range(steps), desc=desc, unit="batch"):
        source, target = next(batches)
        phase, adversarial = ami_phase(step, config)
        record = {"step": step, "phase": phase, "adversarial": adversarial}
        if phase == "forward":
            loss = mle_loss(forward, source, target)
            if adversarial:
                adv, info = forward_adversarial_loss(forward, backward, noise, source, config, generator)
                loss = loss + config.adversarial_weight * adv
                record["reward"] = info["reward"].mean().item()
        elif phase == "backward":
            loss = mle_loss(backward, target, source)
            if adversarial and config.backward_adversarial:
                adv, info = backward_adversarial_loss(backward, forward, noise, source, target, config, generator)
                loss = loss + config.adversarial_weight * adv
                record["fake_nll"] = info["fake_nll"].mean().item()
        elif not config.noise_step:
            history.append(record | {"skipped": True})
            continue
        else:
            loss, info = noise_loss(noise, forward, backward, source, target, config, generator)
            record["noise_norm"] = info["norm"].mean().item()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"AMI step {step} ({phase}, adversarial={adversarial}): loss is {loss.item()}")
        _clipped_step(optimizers[phase], loss, modules[phase].parameters(), config.max_grad_norm)
        record["loss"] = loss.item()
        history.append(record)
    for m in modules.values():
        m.eval()
    return history
