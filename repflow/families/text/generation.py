"""Generating text with a trained family: the three ways of decoding a source that ``text.train.method`` names
(MLE and AMI: beam search on the forward model; MMI: the forward model's N-best reranked by the backward
model), each registered with its paper, and one function that turns source strings into output strings, used
by the evaluate stage and by ``repflow define`` / ``repflow generate`` alike."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from repflow.families.text.ami import mmi_order
from repflow.families.text.decoding import beam_search
from repflow.families.text.models import Seq2Seq, pad_batch
from repflow.families.text.tokenizer import PAD, TextTokenizer
from repflow.registry import Listed, Registry

__all__ = ["TextMethod", "TEXT_METHODS", "Generated", "generate"]


@dataclass(frozen=True, kw_only=True)
class TextMethod(Listed):
    """``backward``: the method trains the backward model Q(S|T); ``rerank``: decoding reranks the forward
    model's N-best with it."""

    backward: bool
    rerank: bool


TEXT_METHODS: Registry[TextMethod] = Registry("text method")
TEXT_METHODS.register("mle", TextMethod(
    backward=False, rerank=False,
    paper="Sutskever, Vinyals, Le 2014, 'Sequence to Sequence Learning with Neural Networks' (NeurIPS)",
    summary="maximum likelihood of the target given the source; beam search"))
TEXT_METHODS.register("mmi", TextMethod(
    backward=True, rerank=True,
    paper="Li, Galley, Brockett, Gao, Dolan 2016, 'A Diversity-Promoting Objective Function for Neural "
          "Conversation Models' (NAACL)",
    summary="MLE forward and backward models; the forward N-best reranked by log P(T|S) + λ log Q(S|T)"))
TEXT_METHODS.register("ami", TextMethod(
    backward=True, rerank=False, paradigm="generative-contrastive",
    paper="Pan, Yang, Liang, Kailkhura, Jin, Hua, Cai, Li 2020, "
          "'Adversarial Mutual Information for Text Generation' (ICML)",
    summary="MLE pretraining, then the forward model rewarded by the backward model's log Q(S|T̃) while the "
            "backward model demotes generated pairs, with latent noise on the encoder states; beam search"))


@dataclass
class Generated:
    """Outputs of :func:`generate`: per source, its ``texts`` (best first, ``show`` of them) and their token
    ``ids``; ``tokens_per_s`` generated tokens (each output's <eos> included) per CPU second of this process."""

    texts: list[list[str]]
    ids: list[list[list[int]]]
    tokens_per_s: float


def _rows(tokens: torch.Tensor) -> list[list[int]]:
    return [[t for t in row.tolist() if t != PAD] for row in tokens]


@torch.no_grad()
def generate(method: str, forward: Seq2Seq, tokenizer: TextTokenizer, sources: Sequence[str], *,
             backward: Seq2Seq | None = None, beam: int = 8, show: int = 1, mmi_lambda: float = 0.5,
             max_len: int = 24, batch_size: int = 100) -> Generated:
    """Decode ``sources`` (strings, encoded with ``tokenizer`` and cut to ``max_len`` tokens) by ``method``'s
    rule with beam ``beam``; for each source the ``show`` best distinct outputs of the beam (MMI: in Eq. MMI's
    order). Unknown characters become <unk> and never stop generation."""
    entry = TEXT_METHODS[method]
    if entry.rerank and backward is None:
        raise ValueError(f"method {method!r} reranks with the backward model; pass backward=")
    if isinstance(show, bool) or not isinstance(show, int) or not 1 <= show <= beam:
        raise ValueError(f"show must be an int in [1, beam={beam}], got {show!r}")
    forward.eval()
    if backward is not None:
        backward.eval()
    texts, ids, produced = [], [], 0
    started = time.process_time()
    for start in range(0, len(sources), batch_size):
        source = pad_batch([tokenizer.encode(s)[:max_len] for s in sources[start:start + batch_size]])
        hypotheses = beam_search(forward, source, beam=beam, max_len=max_len)
        ranked = hypotheses.tokens
        if entry.rerank:
            order = mmi_order(backward, hypotheses, source, lam=mmi_lambda)
            ranked = ranked.gather(1, order[..., None].expand_as(ranked))
        for row in ranked:
            outputs = []
            for candidate in _rows(row):
                if candidate not in outputs:
                    outputs.append(candidate)
            outputs = outputs[:show]
            ids.append(outputs)
            texts.append([tokenizer.decode(o) for o in outputs])
            produced += len(outputs[0]) + 1
    seconds = max(time.process_time() - started, 1e-9)
    return Generated(texts, ids, produced / seconds)
