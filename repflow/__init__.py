"""repflow: an orchestrated pipeline for robust and generative representation learning.

What a user touches: ``params.yaml``, ``dvc.yaml``, the ``repflow`` command and the families' flows. What a
new family needs is here: declare its stages and params (:class:`Family`, :class:`Stage`, :class:`Section`),
write each stage as ``run(ctx: StageContext) -> StageSummary``, and make its flow with
``repflow.flow.family_flow`` (kept out of this namespace: importing ``repflow`` does not import Prefect).
Everything else is internal.
"""
from repflow.config import Section, load_params
from repflow.family import Family, Method, ModelSpec, Stage
from repflow.stage import StageContext, StageSummary, run_stage

__version__ = "0.1.0"
__all__ = ["Family", "Stage", "ModelSpec", "Method", "Section", "StageContext", "StageSummary", "run_stage",
           "load_params"]
