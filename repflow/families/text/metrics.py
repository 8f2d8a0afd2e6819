"""What the text family measures on generated targets: BLEU (sacrebleu), distinct-1/2, the generic-output rate
and the mean log Q(S|T̂) under a separately trained backward evaluator (a proxy for AMI's MI bound, Eq. MI in
``ami``). Outputs are compared as decoded strings; words are whitespace-separated.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import sacrebleu
import torch

from repflow.families.text.models import Seq2Seq, pad_batch, sequence_log_prob

__all__ = ["bleu", "distinct_n", "generic_rate", "mean_backward_log_likelihood", "GENERIC_TOP_K",
           "reference_generality", "reference_generic_rate", "excess_generality"]

GENERIC_TOP_K = 10
"""K of :func:`generic_rate`: the 10 most frequent outputs of the set being measured."""


def bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, exponential smoothing) of ``hypotheses`` against
    ``references[i]``, every reference of hypothesis i (one or more; a word with several senses has several
    definitions, any of which is a right answer)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if any(len(r) == 0 for r in references):
        raise ValueError("every hypothesis needs at least one reference")
    width = max((len(r) for r in references), default=0)
    streams = [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]
    return sacrebleu.corpus_bleu(list(hypotheses), streams).score


def distinct_n(outputs: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): distinct word n-grams over all n-grams of all outputs, in [0, 1]; 0 when
    no output has n words."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    grams = [tuple(words[i:i + n]) for words in (o.split() for o in outputs) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def generic_rate(outputs: Sequence[str], k: int = GENERIC_TOP_K) -> float:
    """Share of outputs that are one of the ``k`` most frequent outputs of ``outputs`` *and* occur more than
    once (an output given once is not generic), in [0, 1]. Independent of how ties in frequency are broken:
    it is the sum of the k largest counts above 1, over the number of outputs."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if not outputs:
        return 0.0
    top = sorted(Counter(outputs).values(), reverse=True)[:k]
    return sum(c for c in top if c > 1) / len(outputs)


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The text's word n-grams, or its words when it has fewer than ``n`` (a one-word output is still scored)."""
    words = text.split()
    size = min(n, len(words))
    return {tuple(words[i:i + size]) for i in range(len(words) - size + 1)} if words else set()


class _ReferenceFrequency:
    """Document frequency of word n-grams over a reference set: the share of references holding the n-gram."""

    def __init__(self, references: Sequence[Sequence[str]], n: int):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        documents = [r for refs in references for r in refs]
        if not documents:
            raise ValueError("no references")
        counts = Counter(g for doc in documents for g in {*_ngrams(doc, n), *_ngrams(doc, 1)})
        self.n, self.share = n, {g: c / len(documents) for g, c in counts.items()}

    def generality(self, text: str) -> float:
        """Mean document frequency of the text's n-grams, in [0, 1]; an empty text is maximally generic (1)."""
        grams = _ngrams(text, self.n)
        return sum(self.share.get(g, 0.0) for g in grams) / len(grams) if grams else 1.0


def reference_generality(outputs: Sequence[str], references: Sequence[Sequence[str]], n: int = 2) -> list[float]:
    """Per output, how generic it is *by the references*: the mean over its word n-grams of the share of all
    references (every reference of every source in ``references``) that contain the n-gram, in [0, 1]. An
    n-gram many right answers share ("of or relating to") is generic; one no reference uses scores 0."""
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} reference lists")
    frequency = _ReferenceFrequency(references, n)
    return [frequency.generality(o) for o in outputs]


def reference_generic_rate(outputs: Sequence[str], references: Sequence[Sequence[str]], n: int = 2) -> float:
    """Share of outputs more generic (:func:`reference_generality`) than *every* reference of their own source,
    in [0, 1]: an output as generic as one of its right answers is not counted, so a source whose right
    answer is itself generic ("of or relating to …" for many adjectives) is not penalised, unlike a fixed
    list of generic outputs. ``references[i]`` holds every reference of output i (at least one)."""
    if any(len(r) == 0 for r in references):
        raise ValueError("every output needs at least one reference")
    if not outputs:
        return 0.0
    frequency = _ReferenceFrequency(references, n)
    return sum(frequency.generality(o) > max(frequency.generality(r) for r in refs)
               for o, refs in zip(outputs, references, strict=True)) / len(outputs)


def excess_generality(outputs: Sequence[str], references: Sequence[Sequence[str]], n: int = 2) -> float:
    """Mean over outputs of :func:`reference_generality` of the output minus the mean of its own references',
    in [−1, 1]: above 0, the outputs are more generic than their right answers."""
    if any(len(r) == 0 for r in references):
        raise ValueError("every output needs at least one reference")
    if not outputs:
        return 0.0
    frequency = _ReferenceFrequency(references, n)
    return sum(frequency.generality(o) - sum(map(frequency.generality, refs)) / len(refs)
               for o, refs in zip(outputs, references, strict=True)) / len(outputs)


@torch.no_grad()
def mean_backward_log_likelihood(evaluator: Seq2Seq, sources: Sequence[Sequence[int]],
                                 outputs: Sequence[Sequence[int]], batch_size: int = 256) -> float:
    """Mean over pairs of log Q_eval(S | T̂) in nats, summed over the source's tokens and its <eos>, with
    ``evaluator`` a backward model (T → S) trained apart from the models being compared (so AMI's own
    backward model does not grade its own generator). Token-id lists; an empty output is allowed."""
    if len(sources) != len(outputs):
        raise ValueError(f"{len(sources)} sources but {len(outputs)} outputs")
    if not sources:
        raise ValueError("no pairs to score")
    was_training = evaluator.training
    evaluator.eval()
    total = 0.0
    for start in range(0, len(sources), batch_size):
        outs = pad_batch([list(o) for o in outputs[start:start + batch_size]])
        srcs = pad_batch([list(s) for s in sources[start:start + batch_size]])
        total += sequence_log_prob(evaluator, outs, srcs).sum().item()
    evaluator.train(was_training)
    return total / len(sources)
