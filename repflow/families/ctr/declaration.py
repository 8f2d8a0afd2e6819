"""The CTR family's declaration: its stages, params sections, flow, methods and commands."""
from __future__ import annotations

from repflow.family import Family, Method, Stage, methods_of
from repflow.families.ctr.params import REGISTERED_MODEL, SECTIONS, check

_STAGES = "repflow.families.ctr.stages"


def _methods() -> list[Method]:
    from repflow.families.ctr.models import CTR_MODELS

    return methods_of(CTR_MODELS, "ctr model", stage="train")


FAMILY = Family(
    name="ctr",
    summary="click-through rate prediction: MARN (attention over item modalities + adversarial modality-invariant "
            "features) vs MAN and DIN on concatenated modalities, with DeepCTR-Torch's DIN as the peer",
    params=SECTIONS,
    check=check,
    flow="repflow.families.ctr.flow:ctr_flow",
    methods=_methods,
    algorithms=("features", "metrics", "models", "training"),
    commands="repflow.families.ctr.commands:add_commands",
    stages=(
        Stage("prep", f"{_STAGES}.prep", "data/ctr/prep", ("ctr.prep",),
              summary="interactions → global time split → histories and item modalities fitted on train, parquet"),
        Stage("train", f"{_STAGES}.train", "artifacts/ctr/train", ("seed", "ctr.train"), {"prep": "prep"},
              summary="click model (din_concat / man / marn / marn_single_disc), validation AUC per epoch, resumable"),
        Stage("evaluate", f"{_STAGES}.evaluate", "reports/ctr/evaluate", ("seed", "ctr.train", "ctr.evaluate"),
              {"prep": "prep", "models": "train"},
              summary="AUC / GAUC / logloss on val and test, AUC per popularity bucket, attention per modality; "
                      "DeepCTR-Torch DIN peer on the same split"),
        Stage("register", f"{_STAGES}.register", "reports/ctr/register", ("ctr.register",),
              {"prep": "prep", "models": "train", "evaluation": "evaluate"},
              registers=(REGISTERED_MODEL,),
              summary="MLflow registry; the alias moves only when the validation AUC beats its holder"),
    ),
)
