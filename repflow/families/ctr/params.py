"""The CTR family's params sections, under ``ctr:`` in ``params.yaml``."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from repflow.config import Section, check_held_out
from repflow.family import ModelSpec
from repflow.families.ctr.models import CTR_MODELS
from repflow.families.ctr.tables import CLICK_THRESHOLD, CTR_SOURCES, OPTIONAL_ROLES, REQUIRED_ROLES
from repflow.registry import literal_of
from repflow.sources import MAX_SKIPPED_SHARE

__all__ = ["SECTIONS", "check", "CRITERIA"]

CRITERIA = ("val_auc", "val_gauc", "auc", "gauc")
"""Metrics of ctr.evaluate the registry may gate on (higher is better); ``val_*`` are on the validation split,
the others on test."""


class CtrPrepParams(Section):
    """Interactions and items → a global time split → behaviour histories and item modalities fitted on the
    training part, as parquet tables (:mod:`repflow.families.ctr.features`)."""

    source: literal_of(CTR_SOURCES) = "movielens"  # type: ignore[valid-type]
    path: str | None = Field(None, description="the 'table' source's parquet / CSV file; for 'movielens' a folder "
                                               "of ml-100k files (default: the recbole wheel's)")
    columns: dict[str, str] | None = Field(None, description="the 'table' source's {role: column}; roles user, "
                                                             "item, timestamp and rating or click are required")
    click_threshold: float = Field(CLICK_THRESHOLD, description="click = rating >= this (MovieLens: 4)")
    genre_separator: str = Field("|", min_length=1)
    max_skipped_share: float = Field(MAX_SKIPPED_SHARE, ge=0.0, le=1.0,
                                     description="the 'table' source: rows with an empty id or a non-numeric "
                                                 "timestamp / rating / click are skipped and counted; more than this "
                                                 "share skipped is an error naming the file and the first bad rows")
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of interactions (by time) in val")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="the latest interactions, held out for test")
    history: int = Field(20, ge=1, le=1000, description="behaviour history: the user's latest clicks strictly "
                                                        "before the interaction")
    title_len: int = Field(12, ge=1, le=256, description="title word tokens per item (padded / cut)")
    min_word_count: int = Field(2, ge=1, le=1_000_000, description="training-title words seen fewer times are out "
                                                                   "of vocabulary")
    year_buckets: int = Field(8, ge=1, le=1000)
    popularity_buckets: int = Field(8, ge=1, le=1000)
    click_rate_buckets: int = Field(10, ge=1, le=1000)

    @field_validator("columns")
    @classmethod
    def _roles(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        unknown = sorted(set(v) - set(REQUIRED_ROLES) - set(OPTIONAL_ROLES))
        missing = [r for r in REQUIRED_ROLES if r not in v]
        if unknown or missing or not ({"rating", "click"} & set(v)):
            raise ValueError(f"columns {v}: roles {list(REQUIRED_ROLES)} and one of rating / click are required, "
                             f"{[r for r in OPTIONAL_ROLES if r not in ('rating', 'click')]} optional"
                             + (f"; unknown: {unknown}" if unknown else ""))
        return v

    @model_validator(mode="after")
    def _source(self) -> CtrPrepParams:
        check_held_out("val_fraction", self.val_fraction, self.test_fraction, "interactions")
        if self.source == "table" and (self.path is None or self.columns is None):
            raise ValueError("source 'table' needs path (a parquet / CSV file) and columns ({role: column})")
        return self


class CtrTrainParams(Section):
    """A click model (DIN head over item modalities) trained with binary cross-entropy, plus MARN's adversarial
    loss for ``marn`` / ``marn_single_disc``; Adam; resumable."""

    model: literal_of(CTR_MODELS) = "marn"  # type: ignore[valid-type]
    dim: int = Field(16, ge=1, le=1024, description="embedding size per modality")
    user_dim: int = Field(16, ge=1, le=1024)
    attention_hidden: int = Field(32, ge=1, le=1024, description="DIN's local activation unit width")
    hidden: list[int] = Field(default_factory=lambda: [64, 32], min_length=1, description="head MLP widths")
    specific_dim: int = Field(32, ge=1, le=1024, description="modality-specific features (man, marn)")
    invariant_dim: int = Field(32, ge=1, le=1024, description="modality-invariant features (marn)")
    epochs: int = Field(3, ge=1, le=10_000, description="the best validation-AUC epoch in benchmarks/marn (3 "
                                                        "seeds)")
    batch_size: int = Field(256, ge=1, le=1_000_000)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    adversarial_weight: float = Field(1.0, ge=0.0, description=(
        "weight of D2's loss behind the gradient reversal (marn models). At 0.1 the invariant features "
        "collapse toward one small vector (ml-100k, 3 epochs: their spread across items 0.07 vs 0.21 at 1.0, "
        "mean |c| 0.13 vs 0.47) while D2 is near chance either way: at 0.1 the branch is made uninformative "
        "rather than modality-invariant"))
    checkpoint_every: int = Field(1, ge=1, le=10_000, description="epochs between resumable checkpoints")

    @field_validator("hidden")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if any(w < 1 for w in v):
            raise ValueError(f"hidden {v}: every width must be >= 1")
        return v


class CtrEvaluateParams(Section):
    """AUC, GAUC and logloss on val and test, test AUC per item-popularity bucket, mean attention per modality;
    and DeepCTR-Torch's DIN trained on the same split and features, in the same table."""

    peer: bool = Field(True, description="train and score DeepCTR-Torch's DIN (pip install deepctr-torch==0.3.0)")
    peer_epochs: int | None = Field(None, ge=1, le=10_000, description="default: ctr.train.epochs")


# The model the register stage registers; its params below default to it (one source for both).
REGISTERED_MODEL = ModelSpec("repflow-ctr", metric="val_auc", direction="max", alias="champion")


class CtrRegisterParams(Section):
    model_name: str = REGISTERED_MODEL.name
    alias: str = REGISTERED_MODEL.alias
    criterion: str = Field(REGISTERED_MODEL.metric,
                           description=f"one of {list(CRITERIA)}; the alias moves when it is higher")


SECTIONS = {"prep": CtrPrepParams, "train": CtrTrainParams, "evaluate": CtrEvaluateParams,
            "register": CtrRegisterParams}


def check(params) -> None:
    """The register criterion must be a metric ctr.evaluate reports, higher-is-better."""
    criterion = params.ctr.register.criterion
    if criterion not in CRITERIA:
        raise ValueError(f"ctr.register.criterion = {criterion!r}; allowed: {list(CRITERIA)}")
