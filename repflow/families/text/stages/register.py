"""text.register: the forward model into the MLflow registry as ``repflow-text-generator``.

The alias moves only when its score (``text.register.criterion``, by default the validation BLEU) beats the
holder's under the same protocol. The logged pt2 model is a :class:`PairScorer`: int64 (N, 2, L) rows of
[source ids; target ids] (PAD = 0 after the content) → log P(target | source) (N,), the forward model's
likelihood. Beside it, under ``checkpoint/``, go the safetensors weights (forward, and backward for MMI
reranking) and the tokenizer: what ``repflow define`` / ``repflow generate`` need to decode.
"""
from __future__ import annotations

import torch

from repflow.families.text.models import Seq2Seq, pad_batch
from repflow.families.text.stages.prep import load_prepared, token_pairs
from repflow.families.text.stages.train import load_models
from repflow.manifest import read_manifest
from repflow.registration import Registration
from repflow.stage import StageContext, StageSummary

CHECKPOINT_FILES = ("forward.safetensors", "forward.json", "backward.safetensors", "backward.json")


class PairScorer(torch.nn.Module):
    """log P(T|S) of stacked (N, 2, L) [source; target] token rows, for export."""

    def __init__(self, model: Seq2Seq):
        super().__init__()
        self.model = model

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        return self.model(pairs[:, 0], pairs[:, 1])


def run(ctx: StageContext) -> StageSummary:
    reg = Registration(ctx)
    params, prep_dir, models_dir = ctx.params, ctx.inputs["prep"], ctx.inputs["models"]
    metrics, score, protocol = reg.evaluation()
    shards, _ = load_prepared(prep_dir)
    forward, _, config = load_models(models_dir)
    pairs = token_pairs(shards, "valid")[:4]
    rows = pad_batch([s for s, _ in pairs] + [t for _, t in pairs])
    example = torch.stack([rows[:len(pairs)], rows[len(pairs):]], 1)
    prep_meta = read_manifest(prep_dir, verify=False)["meta"]
    tags = {"repflow.method": config["method"], "repflow.max_len": config["max_len"],
            "repflow.text_source": prep_meta["source"], "repflow.beam": params.text.evaluate.beam,
            "repflow.mmi_lambda": params.text.evaluate.mmi_lambda}
    files = tuple(models_dir / f for f in CHECKPOINT_FILES if (models_dir / f).is_file()) + (
        prep_dir / "tokenizer.json",)
    try_it = 'repflow define "WORD"' if prep_meta["source"] == "wordnet" else 'repflow generate "SOURCE"'
    return reg.champion(PairScorer(forward).eval(), example.numpy(), metrics=metrics, score=score, protocol=protocol,
                        files=files, tags=tags, try_it=f"try it: `{try_it}`")
