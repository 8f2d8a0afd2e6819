"""The text family's stage bodies, one module per stage, each with ``run(ctx) -> StageSummary``."""
