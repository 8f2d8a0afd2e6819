"""repflow: an orchestrated pipeline for robust and generative representation learning.

What a user touches: ``params.yaml``, ``dvc.yaml``, the ``repflow`` command and the families' flows. What a
new family needs is here: declare its stages and params (:class:`Family`, :class:`Stage`, :class:`Section`),
write each stage as ``run(ctx: StageContext) -> StageSummary``, and make its flow with
``repflow.flow.family_flow``. Everything else is internal.

The names are resolved on first use, so ``import repflow.attacks`` (or any algorithm) needs torch alone:
a GPU box without pydantic, MLflow or Prefect can still run the algorithms.
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {"Family": "repflow.family", "Stage": "repflow.family", "ModelSpec": "repflow.family",
            "Method": "repflow.family", "Section": "repflow.config", "load_params": "repflow.family",
            "StageContext": "repflow.stage", "StageSummary": "repflow.stage", "run_stage": "repflow.stage"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'repflow' has no attribute {name!r}")
