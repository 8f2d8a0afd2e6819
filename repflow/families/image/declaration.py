"""The image family's declaration: its stages, params sections, flow, methods and commands."""
from __future__ import annotations

from pathlib import Path

from repflow.family import Family, ModelSpec, Stage
from repflow.families.image.params import REGISTERED_MODEL, SECTIONS, check

_STAGES = "repflow.families.image.stages"


def _training_inputs(params, available: dict[str, Path]) -> dict[str, Path]:
    """select and train read the generated views only when ``train.data`` uses them."""
    if params.train.data == "real":
        return {k: v for k, v in available.items() if k != "views"}
    if "views" not in available:
        raise ValueError(f"train.data = {params.train.data!r} needs the generate stage's views")
    return available


def _generator_checkpoint(params, available: dict[str, Path]) -> dict[str, Path]:
    """generate also keys on a user's generator folder when ``generate.checkpoint`` names one."""
    return {**available, **({"checkpoint": Path(params.generate.checkpoint)} if params.generate.checkpoint else {})}


def _compare_inputs(params, available: dict[str, Path]) -> dict[str, Path]:
    """compare reads the generated views only when one of its methods learns from them (GenRep)."""
    from repflow.families.image.train_methods import TRAIN_METHODS

    if any(TRAIN_METHODS[m].latent_views for m in params.compare.methods):
        return available
    return {k: v for k, v in available.items() if k != "views"}


def _methods():
    from repflow.families.image.methods import listed_methods

    return listed_methods()


FAMILY = Family(
    name="image",
    summary="robust and generative representation learning on images (GenRep, RCS, ACL/DynACL, SVD-SSA, GLaD)",
    params=SECTIONS,
    params_root=None,
    check=check,
    flow="repflow.families.image.flow:image_flow",
    methods=_methods,
    algorithms=("acl", "augment", "bigan", "contrastive", "coreset", "distill", "generative", "masked_ae", "supervised",
                "zoo", "models", "train_methods", "probes"),
    commands="repflow.families.image.commands:add_commands",
    stages=(
        Stage("prep", f"{_STAGES}.prep", "data/prep", ("seed", "prep"),
              summary="read an image source on disk, stratified train/val/test shards"),
        Stage("generate", f"{_STAGES}.generate", "data/generate", ("seed", "device", "generate"),
              {"shards": "prep"}, uses=_generator_checkpoint, registers=(ModelSpec("repflow-generator"),),
              summary="class-conditional generator, judged by a Fréchet distance; GenRep multiview shards"),
        Stage("distill", f"{_STAGES}.distill", "data/distill", ("seed", "device", "distill"),
              {"shards": "prep", "generator": "generate"},
              summary="GLaD: distil the training split through the generator; cross-architecture evaluation"),
        Stage("select", f"{_STAGES}.select", "data/select", ("seed", "device", "train", "select"),
              {"shards": "prep", "views": "generate"}, uses=_training_inputs,
              summary="warm-up, then the first coreset (RCS, random or full)"),
        Stage("train", f"{_STAGES}.train", "artifacts/train", ("seed", "device", "train", "select"),
              {"shards": "prep", "views": "generate", "selection": "select"}, uses=_training_inputs,
              summary="contrastive encoder (SimCLR, GenRep, ACL, DynACL) on the coreset, resumable"),
        Stage("evaluate", f"{_STAGES}.evaluate", "reports/evaluate", ("seed", "device", "evaluate", "train.stream",
                                                                      "train.shuffle_buffer"),
              {"shards": "prep", "encoder": "train"},
              summary="SLF and ALF linear probes, PGD robust accuracy per ε"),
        Stage("zoo", f"{_STAGES}.zoo", "artifacts/zoo", ("seed", "device", "zoo"), {"shards": "prep"},
              registers=(ModelSpec("repflow-zoo-<member>"),),
              summary="surrogate and target classifiers for the transfer attacks"),
        Stage("transfer", f"{_STAGES}.transfer", "reports/transfer", ("seed", "device", "zoo", "transfer"),
              {"shards": "prep", "zoo": "zoo", "encoder": "train", "evaluation": "evaluate"},
              summary="attack × SVD top-1 logit fusion × ε grid, crafted on the surrogate"),
        Stage("register", f"{_STAGES}.register", "reports/register", ("register",),
              {"encoder": "train", "evaluation": "evaluate"},
              registers=(REGISTERED_MODEL,),
              summary="MLflow registry; the alias moves only when the score beats its holder"),
        Stage("compare", f"{_STAGES}.compare", "reports/compare", ("seed", "device", "train", "evaluate", "zoo",
                                                                    "transfer", "compare"),
              {"shards": "prep", "views": "generate", "zoo": "zoo"}, uses=_compare_inputs, on_demand=True,
              summary="on demand (repflow compare): SSL methods of every paradigm, same data, encoder and budget, "
                      "probed alike"),
    ),
)
