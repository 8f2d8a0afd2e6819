"""The audio-visual family's stage bodies, one module per stage, each with ``run(ctx) -> StageSummary``."""
