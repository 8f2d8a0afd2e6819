"""Generating targets with a :class:`~repflow.families.text.models.Seq2Seq`: greedy, beam search (N-best lists
for MMI reranking) and ancestral sampling (AMI's adversarial step). All run without gradients and return
padded int64 (N, L) token rows without <bos>/<eos> (the row ends at its first PAD), the format the models
take as targets. The model should be in eval mode (dropout off) unless noisy decoding is wanted. <pad>, <bos>
and <unk> are never generated (:data:`NEVER_GENERATED`): a generated <pad> would end the row unseen and an
<unk> decodes to nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from repflow.families.text.models import Memory, Seq2Seq
from repflow.families.text.tokenizer import BOS, EOS, PAD, UNK

__all__ = ["greedy_decode", "sample_decode", "beam_search", "Hypotheses", "NEVER_GENERATED"]

NEVER_GENERATED = (PAD, BOS, UNK)


def _next_log_probs(model: Seq2Seq, memory: Memory, previous: torch.Tensor, state: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    log_probs, state = model.step(memory, previous, state)
    log_probs[:, list(NEVER_GENERATED)] = float("-inf")
    return log_probs, state


def _check_max_len(max_len: int) -> None:
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")


def _memory(model: Seq2Seq, source: torch.Tensor | None, memory: Memory | None) -> Memory:
    if (source is None) == (memory is None):
        raise ValueError("pass exactly one of source (N, S) and memory")
    return model.encode(source) if memory is None else memory


def _finish(tokens: torch.Tensor) -> torch.Tensor:
    """(N, L) generated ids, <eos> and everything after it replaced by PAD."""
    ended = (tokens == EOS).cumsum(dim=1) > 0
    return tokens.masked_fill(ended, PAD)


@torch.no_grad()
def _run(model: Seq2Seq, memory: Memory, max_len: int, choose) -> torch.Tensor:
    n = memory.states.shape[0]
    previous = torch.full((n,), BOS, dtype=torch.long)
    state, done, out = memory.init, torch.zeros(n, dtype=torch.bool), []
    for _ in range(max_len):
        log_probs, state = _next_log_probs(model, memory, previous, state)
        previous = choose(log_probs).masked_fill(done, PAD)
        out.append(previous)
        done |= previous == EOS
        if done.all():
            break
    return _finish(torch.stack(out, dim=1))


def greedy_decode(model: Seq2Seq, source: torch.Tensor | None = None, *, memory: Memory | None = None,
                  max_len: int = 32) -> torch.Tensor:
    """The most likely token at each step, up to ``max_len`` tokens. Pass ``source`` (N, S) or a ``memory``
    (e.g. a perturbed one)."""
    _check_max_len(max_len)
    return _run(model, _memory(model, source, memory), max_len, lambda lp: lp.argmax(dim=-1))


def sample_decode(model: Seq2Seq, source: torch.Tensor | None = None, *, memory: Memory | None = None,
                  max_len: int = 32, temperature: float = 1.0, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Ancestral sampling: each token drawn from softmax(logits / ``temperature``), with ``generator`` for
    reproducible draws."""
    _check_max_len(max_len)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")

    def draw(log_probs: torch.Tensor) -> torch.Tensor:
        probs = (log_probs / temperature).softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    return _run(model, _memory(model, source, memory), max_len, draw)


@dataclass
class Hypotheses:
    """A beam search's result: ``tokens`` (N, B, L) padded rows, best first per source; ``log_prob`` (N, B)
    log P(T|S) of each (the <eos> included when the hypothesis ended); ``score`` (N, B) the ranking score
    (log_prob / (length + 1)^length_penalty)."""

    tokens: torch.Tensor
    log_prob: torch.Tensor
    score: torch.Tensor

    @property
    def best(self) -> torch.Tensor:
        """(N, L) the top hypothesis of each source."""
        return self.tokens[:, 0]


@torch.no_grad()
def beam_search(model: Seq2Seq, source: torch.Tensor | None = None, *, memory: Memory | None = None,
                beam: int = 4, max_len: int = 32, length_penalty: float = 0.0) -> Hypotheses:
    """Beam search keeping ``beam`` hypotheses per source. A hypothesis that emits <eos> is kept frozen (its
    only continuation is PAD at log-probability 0) and keeps competing on its score; the search stops when
    all ``beam`` hypotheses of every source have ended or after ``max_len`` tokens. Hypotheses are ranked by
    log P / (length + 1)^``length_penalty`` (0: raw log-probability). ``beam=1`` is greedy decoding."""
    _check_max_len(max_len)
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam must be an int >= 1, got {beam!r}")
    memory = _memory(model, source, memory)
    n, vocab = memory.states.shape[0], model.vocab_size
    memory = memory.repeat(beam)
    state = memory.init
    log_prob = torch.full((n, beam), float("-inf"))
    log_prob[:, 0] = 0.0
    previous = torch.full((n * beam,), BOS, dtype=torch.long)
    ended = torch.zeros(n * beam, dtype=torch.bool)
    tokens = torch.empty((n * beam, 0), dtype=torch.long)
    frozen = torch.full((vocab,), float("-inf"))
    frozen[PAD] = 0.0
    for _ in range(max_len):
        step_lp, state = _next_log_probs(model, memory, previous, state)
        step_lp = torch.where(ended[:, None], frozen, step_lp)
        candidates = (log_prob.reshape(-1, 1) + step_lp).reshape(n, beam * vocab)
        log_prob, index = candidates.topk(beam, dim=1)
        rows = (torch.arange(n)[:, None] * beam + index // vocab).reshape(-1)
        previous = (index % vocab).reshape(-1)
        tokens = torch.cat([tokens[rows], previous[:, None]], dim=1)
        state, ended = state[:, rows], ended[rows] | (previous == EOS)
        if ended.all():
            break
    tokens = _finish(tokens)
    lengths = (tokens != PAD).sum(dim=1).reshape(n, beam)
    score = log_prob / (lengths + 1).float() ** length_penalty
    order = score.argsort(dim=1, descending=True, stable=True)
    tokens = tokens.reshape(n, beam, -1).gather(1, order[..., None].expand(-1, -1, tokens.shape[1]))
    return Hypotheses(tokens, log_prob.gather(1, order), score.gather(1, order))
