"""The image family's stage bodies: one module per stage, each with ``run(ctx) -> StageSummary`` (declared in
``repflow/families/image/declaration.py``, run by :func:`repflow.stage.run_stage`)."""
