"""text.evaluate: generations for held-out source words (``text.evaluate.max_sources`` of each of the valid and
test splits, chosen with the seed), decoded by the trained method's rule with beam ``text.evaluate.beam``
(:func:`~repflow.families.text.generation.generate`), scored by

- BLEU (sacrebleu) against every reference of the source (a word with several senses has several);
- distinct-1/2 and the generic-output rate (share of outputs among the 10 most frequent repeated ones);
- mean log Q(S|T̂) (nats per source) under a backward *evaluator* trained here on the training split from its
  own seed, so no model grades its own generator; beside it the same for the real references;
- generated tokens per CPU second.

Valid gives ``val_bleu`` (what the registry gates on by default); test gives the rest. The report shows
sample generations side by side with their references, and the most frequent outputs.
"""
from __future__ import annotations

import json
import logging
import random
from collections import Counter

from repflow.families.text.ami import swap, train_mle
from repflow.families.text.generation import generate
from repflow.families.text.metrics import bleu, distinct_n, generic_rate, mean_backward_log_likelihood
from repflow.families.text.stages.prep import load_prepared, references, token_pairs
from repflow.families.text.stages.train import build_from_config, load_models
from repflow.manifest import atomic_write_text, read_manifest
from repflow.report import bar_plot, markdown_table
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.text.evaluate")

EVALUATOR_SEED = 1000
"""Offset from ``seed`` of the evaluator's weights and batch order."""


def chosen_sources(refs: dict[str, list[str]], n: int, seed: int) -> list[str]:
    """``n`` sources of a split, sorted then shuffled with ``seed`` (the same ones for every method)."""
    sources = sorted(refs)
    random.Random(seed).shuffle(sources)
    return sources[:n]


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.text.evaluate
    shards, tokenizer = load_prepared(ctx.inputs["prep"])
    forward, backward, config = load_models(ctx.inputs["models"])
    method, max_len = config["method"], config["max_len"]
    train = params.text.train
    evaluator = build_from_config(config, params.seed + EVALUATOR_SEED)
    train_mle(evaluator, swap(token_pairs(shards, "train")), epochs=cfg.evaluator_epochs or train.epochs,
              batch_size=train.batch_size, lr=train.lr, max_len=max_len, seed=params.seed + EVALUATOR_SEED,
              desc="evaluator MLE")
    metrics, shown = {}, []
    for split in ("valid", "test"):
        refs = references(shards, split)
        sources = chosen_sources(refs, cfg.max_sources, params.seed)
        out = generate(method, forward, tokenizer, sources, backward=backward, beam=cfg.beam,
                       mmi_lambda=cfg.mmi_lambda, max_len=max_len)
        texts = [t[0] for t in out.texts]
        normalized = [[tokenizer.normalize(r) for r in refs[s]] for s in sources]
        source_ids = [tokenizer.encode(s)[:max_len] for s in sources]
        prefix = "val_" if split == "valid" else ""
        metrics[f"{prefix}bleu"] = bleu(texts, normalized)
        if split == "test":
            reference_ids = [tokenizer.encode(refs[s][0])[:max_len] for s in sources]
            metrics.update({
                "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                "generic_rate": generic_rate(texts),
                "log_q": mean_backward_log_likelihood(evaluator, source_ids, [o[0] for o in out.ids]),
                "log_q_reference": mean_backward_log_likelihood(evaluator, source_ids, reference_ids),
                "tokens_per_s": out.tokens_per_s, "mean_words": sum(len(t.split()) for t in texts) / len(texts),
                "sources": len(sources)})
            shown = [{"source": s, "generated": t, "reference": " / ".join(refs[s][:2])}
                     for s, t in zip(sources, texts)]
            with open(tmp / "generations.jsonl", "w", encoding="utf-8") as f:
                for s, t in zip(sources, texts):
                    f.write(json.dumps({"source": s, "generated": t, "references": refs[s]}) + "\n")
            frequent = Counter(texts).most_common(10)
    atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=1, sort_keys=True))
    protocol = {"prep": read_manifest(ctx.inputs["prep"], verify=False)["digest"], "beam": cfg.beam,
                "max_sources": cfg.max_sources, "seed": params.seed, "mmi_lambda": cfg.mmi_lambda,
                "evaluator_epochs": cfg.evaluator_epochs or train.epochs}
    atomic_write_text(tmp / "protocol.json", json.dumps(protocol, indent=1, sort_keys=True))
    bar_plot([f"{t[:28]}…" if len(t) > 28 else t for t, _ in frequent], {"outputs": [c for _, c in frequent]},
             tmp / "frequent_outputs.png", ylabel=f"of {metrics['sources']} test outputs",
             title=f"text.evaluate {method}: the 10 most frequent outputs")
    log.info("text.evaluate: %s BLEU %.2f (valid %.2f), distinct-2 %.3f, generic %.3f, log Q %.2f", method,
             metrics["bleu"], metrics["val_bleu"], metrics["distinct_2"], metrics["generic_rate"], metrics["log_q"])
    headline = [{"method": method, **{k: metrics[k] for k in ("val_bleu", "bleu", "distinct_1", "distinct_2",
                                                              "generic_rate", "log_q", "log_q_reference",
                                                              "tokens_per_s")}}]
    md = (f"- {metrics['sources']:.0f} held-out test sources (and as many valid ones), beam {cfg.beam}; BLEU "
          "against every reference of the source; log Q in nats per source under an evaluator trained here from "
          "another seed (log_q_reference: the same for the real definitions)\n\n"
          + markdown_table(headline, floatfmt="{:.3f}") + "\n\n**Samples (test)**\n\n"
          + markdown_table(shown[:cfg.samples_shown])
          + f"\n\n![frequent outputs]({(ctx.out / 'frequent_outputs.png').resolve().as_uri()})")
    return StageSummary(metrics=metrics, markdown=md, plots=["frequent_outputs.png"])
