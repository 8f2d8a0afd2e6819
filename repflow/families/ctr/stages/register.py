"""ctr.register: the click model into the MLflow registry as ``repflow-ctr``.

The alias moves only when its score (``ctr.register.criterion``, by default the validation AUC) beats the
holder's under the same protocol. The logged pt2 model is a :class:`Scorer`: one int64 tensor (N, 2 + H) of
[user row, item row, H history item rows] → click probabilities (N,). Beside it, under ``checkpoint/``, go
the safetensors weights, the feature space (which maps ids to rows and rebuilds the model), the interactions
(every user's history) and the catalogue (titles): what ``repflow recommend USER_ID`` needs.
"""
from __future__ import annotations

import numpy as np
import torch

from repflow.families.ctr.features import examples_to_tensors
from repflow.families.ctr.stages.prep import load_prepared
from repflow.families.ctr.stages.train import load_model
from repflow.registration import Registration
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
    reg = Registration(ctx)
    prep_dir, models_dir = ctx.inputs["prep"], ctx.inputs["models"]
    metrics, score, protocol = reg.evaluation()
    _, examples, history = load_prepared(prep_dir)
    model, config = load_model(models_dir, prep_dir)
    sample = examples_to_tensors(examples.head(4), None, history)
    example = torch.cat([sample.user[:, None], sample.item[:, None], sample.history], 1).numpy().astype(np.int64)
    files = tuple(models_dir / f for f in CHECKPOINT_FILES) + tuple(prep_dir / f for f in PREP_FILES)
    return reg.champion(Scorer(model).eval(), example, metrics=metrics, score=score, protocol=protocol, files=files,
                        tags={"repflow.model": config["model"], "repflow.history": history},
                        try_it="try it: `repflow recommend USER_ID --top 10`")
