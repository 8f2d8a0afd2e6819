"""The text family's params sections, under ``text:`` in ``params.yaml``."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from repflow.config import Section, check_held_out, distinct_names
from repflow.family import ModelSpec
from repflow.families.text.generation import TEXT_METHODS
from repflow.families.text.models import SEQ2SEQ
from repflow.families.text.wordnet import POS_FILES, WORDNET_DIR
from repflow.registry import literal_of

__all__ = ["SECTIONS", "check", "CRITERIA"]

CRITERIA = ("val_bleu", "bleu", "distinct_2", "log_q")
"""Metrics of text.evaluate the registry may gate on (higher is better); ``val_bleu`` is on the validation
split, the others on test."""


class TextPrepParams(Section):
    """Source → target pairs (WordNet's "word (pos)" → its definition, or a user's JSONL), split by source word
    so that no word is in two splits, a BPE tokenizer trained on the training split, shards of token ids."""

    source: Literal["wordnet", "jsonl"] = "wordnet"
    path: str | None = Field(None, description=f"wordnet: the dictionary folder (default {WORDNET_DIR}); jsonl: "
                                               "the pairs file, one JSON object per line")
    source_field: str = Field("source", min_length=1, description="jsonl: the key holding the source text")
    target_field: str = Field("target", min_length=1, description="jsonl: the key holding the target text")
    pos: list[str] = Field(default_factory=lambda: list(POS_FILES), min_length=1,
                           description=f"wordnet: parts of speech, of {list(POS_FILES)}")
    max_target_words: int | None = Field(10, ge=1, le=1000, description="wordnet: definitions of at most this "
                                                                        "many words (short glosses train fast)")
    max_pairs: int | None = Field(8000, ge=10, le=10_000_000, description="pairs from randomly chosen source "
                                                                          "words until at least this many; null: all")
    max_len: int = Field(24, ge=2, le=512, description="the models' limit in tokens: longer sources or targets "
                                                       "are skipped and counted")
    max_skipped_share: float = Field(0.1, ge=0.0, le=1.0, description="more pairs skipped than this share is an "
                                                                      "error naming the file and the first bad lines")
    vocab_size: int = Field(2000, ge=16, le=200_000, description="BPE vocabulary, the 4 specials included")
    min_frequency: int = Field(2, ge=1, le=1000, description="a BPE merge must occur this often")
    valid_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of source words (not pairs) in valid")
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of source words held out for test")
    shard_size: int = Field(4096, ge=1, le=1_000_000, description="pairs per shard")

    @field_validator("pos")
    @classmethod
    def _pos(cls, v: list[str]) -> list[str]:
        return distinct_names(v, POS_FILES, "pos")

    @model_validator(mode="after")
    def _source(self) -> TextPrepParams:
        check_held_out("valid_fraction", self.valid_fraction, self.test_fraction, "source words")
        if self.source == "jsonl" and self.path is None:
            raise ValueError("source 'jsonl' needs path: a file with one {source, target} JSON object per line")
        return self


class TextTrainParams(Section):
    """The forward model P(T|S) by MLE; for ``mmi`` and ``ami`` also the backward model Q(S|T); for ``ami``
    then AMI's adversarial fine-tuning of both with the latent-noise model (:mod:`repflow.families.text.ami`).
    Resumable per phase."""

    method: literal_of(TEXT_METHODS) = "ami"  # type: ignore[valid-type]
    model: literal_of(SEQ2SEQ) = "gru_attention"  # type: ignore[valid-type]
    embed: int = Field(64, ge=1, le=4096)
    hidden: int = Field(128, ge=2, le=4096, description="even: the encoder has hidden/2 per direction")
    layers: int = Field(1, ge=1, le=8)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    epochs: int = Field(5, ge=1, le=10_000, description="MLE epochs of each model (benchmarks/ami)")
    batch_size: int = Field(64, ge=1, le=100_000)
    lr: float = Field(2e-3, gt=0.0, le=1.0, description="Adam, MLE")
    ami_steps: int = Field(320, ge=1, le=10_000_000, description="AMI batches after MLE: cycles of 8 forward, 8 "
                                                                 "backward and 4 noise batches (official schedule)")
    ami_batch_size: int = Field(64, ge=1, le=100_000)
    ami_lr: float = Field(2e-4, gt=0.0, le=1.0, description="Adam for the three models during AMI")
    adversarial_weight: float = Field(1.0, ge=0.0, description="the adversarial terms against the MLE ones")
    samples: int = Field(5, ge=1, le=100, description="K generated targets per source (official 5)")
    noise_scale: float = Field(0.1, ge=0.0, description="λ in h + λε; official 1.0 drowns the source at this "
                                                        "scale (see AMIConfig)")
    backward_adversarial: bool = Field(True, description="ablation switch: false drops the backward model's "
                                                         "demotion of generated targets (its MLE batches stay)")
    noise_step: bool = Field(True, description="ablation switch: false leaves the noise model untrained (its "
                                               "batches in the schedule do nothing)")

    @field_validator("hidden")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"{v}: must be even (two encoder directions of hidden/2)")
        return v


class TextEvaluateParams(Section):
    """Beam-search generations for held-out source words, scored by BLEU against every reference of the source,
    distinct-1/2, the generic-output rate and mean log Q(S|T̂) under a backward evaluator trained here on the
    training split from its own seed; sample generations side by side in the report."""

    beam: int = Field(8, ge=1, le=256, description="beam size (MMI: the N-best it reranks)")
    mmi_lambda: float = Field(0.5, ge=0.0, description="λ of MMI reranking")
    max_sources: int = Field(400, ge=1, le=10_000_000, description="held-out sources scored per split")
    evaluator_epochs: int | None = Field(None, ge=1, le=10_000, description="default: text.train.epochs")
    samples_shown: int = Field(24, ge=1, le=1000, description="generations shown side by side in the report")


# The model the register stage registers; its params below default to it (one source for both).
REGISTERED_MODEL = ModelSpec("repflow-text-generator", metric="val_bleu", direction="max", alias="champion")


class TextRegisterParams(Section):
    model_name: str = REGISTERED_MODEL.name
    alias: str = REGISTERED_MODEL.alias
    criterion: str = Field(REGISTERED_MODEL.metric,
                           description=f"one of {list(CRITERIA)}; the alias moves when it is higher")


SECTIONS = {"prep": TextPrepParams, "train": TextTrainParams, "evaluate": TextEvaluateParams,
            "register": TextRegisterParams}


def check(params) -> None:
    """The register criterion must be a metric text.evaluate reports, higher-is-better; the beam must hold the
    generations shown."""
    criterion = params.text.register.criterion
    if criterion not in CRITERIA:
        raise ValueError(f"text.register.criterion = {criterion!r}; allowed: {list(CRITERIA)}")
