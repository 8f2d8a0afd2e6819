"""ctr.register: the click model into the MLflow registry as ``repflow-ctr``.

The alias moves only when its score (``ctr.register.criterion``, by default the validation AUC) beats the
holder's under the same protocol. The logged pt2 model is a :class:`Scorer`: one int64 tensor (N, 2 + H) of
[user row, item row, H history item rows] → click probabilities (N,). Beside it, under ``checkpoint/``, go
the safetensors weights, the feature space (which maps ids to rows and rebuilds the model), the interactions
(every user's history) and the catalogue (titles): what ``repflow recommend USER_ID`` needs.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from repflow import tracking
from repflow.families.ctr.features import examples_to_tensors
from repflow.families.ctr.stages.prep import load_prepared
from repflow.families.ctr.stages.train import load_model
from repflow.manifest import atomic_write_text
from repflow.stage import StageContext, StageSummary

CHECKPOINT_FILES = ("model.safetensors", "model.json")
PREP_FILES = ("users.parquet", "items.parquet", "space.json", "interactions.parquet", "catalogue.parquet")


class Scorer(torch.nn.Module):
    """A click model's forward on one stacked tensor, for export: (N, 2 + H) int64 rows → probabilities (N,)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(rows[:, 0], rows[:, 1], rows[:, 2:]).logits)


def run(ctx: StageContext) -> StageSummary:
    params, tmp, lin = ctx.params, ctx.tmp, ctx.lineage
    cfg = params.ctr.register
    prep_dir, models_dir, eval_dir = ctx.inputs["prep"], ctx.inputs["models"], ctx.inputs["evaluation"]
    metrics, score, protocol = tracking.read_evaluation(eval_dir, "ctr.evaluate", cfg.criterion)
    _, examples, history = load_prepared(prep_dir)
    model, config = load_model(models_dir, prep_dir)
    sample = examples_to_tensors(examples.head(4), None, history)
    example = torch.cat([sample.user[:, None], sample.item[:, None], sample.history], 1).numpy().astype(np.int64)
    tags = {"repflow.family": "ctr", "repflow.model": config["model"], "repflow.history": history,
            "repflow.params": json.dumps(params.ctr.model_dump(mode="json"), sort_keys=True),
            "repflow.input.prep": lin["inputs"]["prep"], "repflow.input.models": lin["inputs"]["models"],
            "repflow.input.evaluation": lin["inputs"]["evaluation"]}
    tags.update({f"repflow.metric.{k}": v for k, v in metrics.items()})
    files = tuple(models_dir / f for f in CHECKPOINT_FILES) + tuple(prep_dir / f for f in PREP_FILES)
    result = tracking.register_champion(
        Scorer(model).eval(), cfg.model_name, example, score=score, criterion=cfg.criterion, protocol=protocol,
        alias=cfg.alias, files=files, identity={"evaluation": lin["inputs"]["evaluation"], "criterion": cfg.criterion},
        code_version=lin["code_version"], tags=tags, higher_is_better=ctx.stage.registers[0].direction == "max")
    atomic_write_text(tmp / "register.json", json.dumps(result, indent=1))
    md = (f"- registered `{result['uri']}` ({cfg.criterion} {score:.4f}); alias `{cfg.alias}` "
          f"{'moved to it' if result['alias_moved'] else 'kept'} ({result['alias_reason']}); try it: "
          f"`repflow recommend USER_ID --top 10`")
    return StageSummary(metrics={"score": score, "alias_moved": result["alias_moved"], "version": result["version"],
                                 "uri": result["uri"], "model": cfg.model_name, "alias": cfg.alias}, markdown=md)
