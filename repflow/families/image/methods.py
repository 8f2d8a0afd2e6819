"""What ``repflow families`` lists for the image family: every registered method, read from the registries
next to the algorithms, so a newly registered method is listed without touching this file."""
from __future__ import annotations

from repflow.attacks import ATTACKS, SVDLogitFusion
from repflow.families.image.train_methods import TRAIN_METHODS
from repflow.families.image.coreset import SELECTION_METHODS
from repflow.families.image.distill import DISTILL_LOSSES, DISTILL_PARAMS
from repflow.family import Method, methods_of

__all__ = ["listed_methods", "GENERATOR"]

GENERATOR = Method(
    name="cvae", kind="generator", paradigm="generative",
    paper="Kingma & Welling 2014, 'Auto-Encoding Variational Bayes' (ICLR); class-conditional as in Sohn et al. 2015",
    summary="the generate stage's class-conditional VAE decoder with a style mapping: GenRep's views, GLaD's latents",
    stage="generate")

# (kind, registry, stage that chooses from it by name). Attacks run in transfer, whose ``transfer.attacks`` names
# them; evaluate's PGD is its own fixed robust-accuracy protocol (``evaluate.pgd_steps``), not a registry choice.
_REGISTRIES = (("train", TRAIN_METHODS, "train"), ("select", SELECTION_METHODS, "select"),
               ("distill-loss", DISTILL_LOSSES, "distill"), ("distill-param", DISTILL_PARAMS, "distill"),
               ("attack", ATTACKS, "transfer"))


def listed_methods() -> list[Method]:
    """Training, selection, distillation and attack methods in registration order, then SVD-SSA's logit
    fusion (``transfer.fusion``, which wraps any attack) and the generator (one per family, not chosen by name)."""
    listed = [m for kind, registry, stage in _REGISTRIES for m in methods_of(registry, kind, stage=stage)]
    listed.append(Method("svd_fusion", "attack", SVDLogitFusion.paradigm, SVDLogitFusion.paper, SVDLogitFusion.summary,
                         stage="transfer"))
    listed.append(GENERATOR)
    return listed
