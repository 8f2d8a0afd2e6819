"""Sequence-to-sequence networks of the text family: the forward model P(T|S) and the backward model Q(S|T) are
two instances of one class (the backward one trained on swapped pairs, sharing the tokenizer), and AMI's
latent-noise model that perturbs encoder states.

Token tensors are int64 (N, L) padded with ``PAD`` at the end; a row holds the content tokens only (no <bos>,
no <eos>): the decoder is fed ``<bos> t_1 … t_n`` and must predict ``t_1 … t_n <eos>``.

Why a GRU encoder-decoder with attention (Luong's "general" score, bidirectional encoder) rather than a small
Transformer: AMI's official code (``ZJULearning/AMI``, an OpenNMT-py fork; Pan et al., ICML 2020) trains a
recurrent one (an LSTM encoder-decoder with general attention); on one CPU thread with a few thousand short
pairs it reaches a usable model in minutes, and step-by-step decoding (greedy, beam, sampling: AMI samples
K outputs per source every adversarial batch) costs one GRU cell per token, with no key/value cache to keep.
The decoder has no input feeding (the attention output is not fed back), so teacher forcing runs the
decoder GRU over the whole target in one call and attends for all positions at once.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from repflow.families.text.tokenizer import BOS, EOS, PAD
from repflow.registry import Listed, Registry

__all__ = ["Memory", "Seq2Seq", "reverse_within", "LatentNoise", "noise_norm", "pad_batch", "lengths_of", "decoder_io",
           "Seq2SeqEntry", "SEQ2SEQ", "build_seq2seq", "sequence_log_prob"]


def _check_size(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def pad_batch(sequences: list[list[int]], max_len: int | None = None) -> torch.Tensor:
    """Token lists → int64 (N, L) padded with PAD, L the longest (cut to ``max_len`` if given; at least 1)."""
    longest = max((len(s) for s in sequences), default=0)
    width = max(min(longest, max_len) if max_len is not None else longest, 1)
    out = torch.full((len(sequences), width), PAD, dtype=torch.long)
    for i, s in enumerate(sequences):
        s = s[:width]
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def lengths_of(tokens: torch.Tensor) -> torch.Tensor:
    """(N,) number of content tokens of each row of a padded (N, L) batch."""
    return (tokens != PAD).sum(dim=1)


def decoder_io(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(decoder input, decoder output, output mask) of a padded target batch (N, L): input ``<bos> t``
    (N, L+1), output ``t <eos>`` (N, L+1) with <eos> right after each row's last token, mask True on the
    positions that are scored (the content tokens and the <eos>)."""
    n = target.shape[0]
    lengths = lengths_of(target)
    output = torch.cat([target, torch.full((n, 1), PAD, dtype=torch.long)], dim=1)
    output[torch.arange(n), lengths] = EOS
    decoder_in = torch.cat([torch.full((n, 1), BOS, dtype=torch.long), target], dim=1)
    mask = torch.arange(output.shape[1])[None, :] <= lengths[:, None]
    return decoder_in, output, mask


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``lengths[n]`` positions of ``x`` (N, L, ...) in reverse order, the rest left in place:
    what a backward-direction RNN must read so that padding at the end never enters it."""
    positions = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


@dataclass
class Memory:
    """What the encoder hands the decoder: ``states`` (N, S, H) attention memory, ``mask`` (N, S) True on real
    positions, ``init`` (layers, N, H) the decoder's initial state."""

    states: torch.Tensor
    mask: torch.Tensor
    init: torch.Tensor

    def repeat(self, k: int) -> Memory:
        """Each row repeated ``k`` times in place (row n → rows n·k … n·k+k−1), for K samples or a beam."""
        return Memory(self.states.repeat_interleave(k, 0), self.mask.repeat_interleave(k, 0),
                      self.init.repeat_interleave(k, 1))

    def select(self, rows: torch.Tensor) -> Memory:
        return Memory(self.states[rows], self.mask[rows], self.init[:, rows])

    def perturbed(self, noise: torch.Tensor, scale: float) -> Memory:
        """AMI's latent-noise perturbation: states h + λ·ε (ε of the states' shape), padding left at zero.
        The decoder's initial state is not perturbed (the official code perturbs the memory bank only)."""
        if noise.shape != self.states.shape:
            raise ValueError(f"noise {tuple(noise.shape)} must match the states {tuple(self.states.shape)}")
        return Memory(self.states + scale * noise * self.mask[..., None], self.mask, self.init)


class Seq2Seq(nn.Module):
    """GRU encoder-decoder with attention over one shared vocabulary (embeddings shared by encoder and decoder).

    Encoder: embedding (``embed``) → bidirectional GRU (``hidden``/2 per direction, ``layers``) → states (N, S,
    hidden); decoder initial state = tanh(linear(final forward and backward states)). The two directions are
    separate GRUs and the backward one reads each row reversed within its length (:func:`reverse_within`):
    the same function as a packed bidirectional ``nn.GRU``, without ``pack_padded_sequence``'s data-dependent
    shapes, so the model exports with ``torch.export`` (the registered pt2 scorer). Decoder: GRU (``hidden``,
    ``layers``) over the embedded previous tokens → Luong general attention (score h_tᵀ W s) → tanh(W_c [h_t;
    c_t]) → logits over the vocabulary. ``dropout`` is applied to embeddings and attention outputs."""

    def __init__(self, vocab_size: int, embed: int = 64, hidden: int = 128, layers: int = 1, dropout: float = 0.1):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("embed", embed), ("hidden", hidden), ("layers", layers)):
            _check_size(name, value)
        if hidden % 2:
            raise ValueError(f"hidden must be even (two encoder directions of hidden/2), got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.config = {"vocab_size": vocab_size, "embed": embed, "hidden": hidden, "layers": layers,
                       "dropout": dropout}
        self.vocab_size, self.hidden, self.layers = vocab_size, hidden, layers
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.encoder_forward = nn.ModuleList(
            nn.GRU(embed if i == 0 else hidden, hidden // 2, batch_first=True) for i in range(layers))
        self.encoder_backward = nn.ModuleList(
            nn.GRU(embed if i == 0 else hidden, hidden // 2, batch_first=True) for i in range(layers))
        self.bridge = nn.Linear(hidden, hidden)
        self.decoder = nn.GRU(embed, hidden, layers, batch_first=True)
        self.attention = nn.Linear(hidden, hidden, bias=False)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.out = nn.Linear(hidden, vocab_size)
        self.drop = nn.Dropout(dropout)

    def encode(self, source: torch.Tensor, soft: torch.Tensor | None = None) -> Memory:
        """Encode a padded source batch (N, S). With ``soft`` (N, S, V) probabilities, each position is
        embedded as the probability-weighted mean of the embeddings (differentiable in ``soft``; AMI's noise
        step feeds the forward model's predictions to the backward model this way); ``source`` then only
        gives the lengths. An empty row is read as one <pad> (so an empty generated target still encodes)."""
        lengths = lengths_of(source).clamp_min(1)
        rows = torch.arange(source.shape[0], device=source.device)
        mask = torch.arange(source.shape[1], device=source.device)[None, :] < lengths[:, None]
        states = self.drop(self.embedding(source) if soft is None else soft @ self.embedding.weight)
        finals = []
        for forward_gru, backward_gru in zip(self.encoder_forward, self.encoder_backward):
            ahead, _ = forward_gru(states)
            behind, _ = backward_gru(reverse_within(states, lengths))
            finals.append(torch.cat([ahead[rows, lengths - 1], behind[rows, lengths - 1]], dim=-1))
            states = torch.cat([ahead, reverse_within(behind, lengths)], dim=-1) * mask[..., None]
        init = torch.tanh(self.bridge(torch.stack(finals)))
        return Memory(states, mask, init)

    def _readout(self, decoded: torch.Tensor, memory: Memory) -> torch.Tensor:
        """Decoder outputs (N, T, H) → logits (N, T, V) through attention on the memory."""
        scores = self.attention(decoded) @ memory.states.transpose(1, 2)
        scores = scores.masked_fill(~memory.mask[:, None, :], float("-inf"))
        context = scores.softmax(dim=-1) @ memory.states
        return self.out(self.drop(torch.tanh(self.combine(torch.cat([decoded, context], dim=-1)))))

    def decode(self, memory: Memory, decoder_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (N, T, V) for the decoder inputs (N, T) (``<bos> t``, see :func:`decoder_io`)."""
        decoded, _ = self.decoder(self.drop(self.embedding(decoder_in)), memory.init)
        return self._readout(decoded, memory)

    def step(self, memory: Memory, previous: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: (log-probabilities (N, V) of the next token, new state (layers, N, H)) given the
        previous tokens (N,) and the state (``memory.init`` at the first step, with previous = <bos>)."""
        decoded, state = self.decoder(self.drop(self.embedding(previous[:, None])), state)
        return self._readout(decoded, memory)[:, 0].log_softmax(dim=-1), state

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N,) log P(target | source) summed over the target's tokens and its <eos>."""
        return sequence_log_prob(self, source, target)


def sequence_log_prob(model: Seq2Seq, source: torch.Tensor, target: torch.Tensor, memory: Memory | None = None,
                      per_token: bool = False) -> torch.Tensor:
    """(N,) teacher-forced log-likelihood of each padded target row (content tokens + <eos>) given its source
    row, summed (or, ``per_token``, averaged over those tokens). ``memory`` replaces encoding ``source`` (a
    perturbed or repeated memory)."""
    if memory is None:
        memory = model.encode(source)
    decoder_in, decoder_out, mask = decoder_io(target)
    log_probs = model.decode(memory, decoder_in).log_softmax(dim=-1)
    token_lp = log_probs.gather(-1, decoder_out[..., None]).squeeze(-1) * mask
    total = token_lp.sum(dim=1)
    return total / mask.sum(dim=1) if per_token else total


class LatentNoise(nn.Module):
    """AMI's noise model ε = μ(h) + σ(h)⊙z, z ~ N(0, I), per memory position (official
    ``onmt/noise_generator.py``): μ = Linear(H, H)–ReLU–Linear(H, H) on the encoder states h (N, S, H) and
    σ = softplus(μ), which reuses μ (there is no separate σ head; kept as in the code). Sampling is
    reparameterised, so the noise is differentiable in the noise model's weights."""

    def __init__(self, hidden: int):
        super().__init__()
        _check_size("hidden", hidden)
        self.mu = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mu = self.mu(states)
        z = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + F.softplus(mu) * z


def noise_norm(noise: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) size of a noise (N, S, H): the L2 norm over the hidden axis at each real position, averaged over
    the row's positions. (The official code's ``torch.norm(noise, 2, 1)`` on OpenNMT's (S, N, H) layout takes
    the norm over the *batch* axis, mixing examples; here each example and position has its own norm.)"""
    per_position = noise.norm(dim=-1) * mask
    return per_position.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


@dataclass(frozen=True, kw_only=True)
class Seq2SeqEntry(Listed):
    """``factory(vocab_size=..., **kw)`` builds the network."""

    factory: Callable[..., Seq2Seq]


SEQ2SEQ: Registry[Seq2SeqEntry] = Registry("text model")
SEQ2SEQ.register("gru_attention", Seq2SeqEntry(
    factory=Seq2Seq,
    paper="Luong, Pham, Manning 2015, 'Effective Approaches to Attention-based Neural Machine Translation' "
          "(EMNLP); the seq2seq of AMI's CPU-scale plan (Pan et al. 2020, ICML)",
    summary="bidirectional GRU encoder, GRU decoder with general (bilinear) attention, shared embeddings"))


def build_seq2seq(name: str, vocab_size: int, **kw: Any) -> Seq2Seq:
    """The registered network ``name`` over ``vocab_size`` tokens; ``kw`` its constructor's keywords (embed,
    hidden, layers, dropout). An unknown name or keyword raises ValueError naming the allowed ones."""
    entry = SEQ2SEQ[name]
    accepted = [p for p in inspect.signature(entry.factory).parameters if p != "vocab_size"]
    unknown = [k for k in kw if k not in accepted]
    if unknown:
        raise ValueError(f"text model {name!r} has no option(s) {unknown}; allowed: {accepted}")
    return entry.factory(vocab_size=vocab_size, **kw)
