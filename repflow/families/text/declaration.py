"""The text family's declaration: its stages, params sections, flow, methods and commands."""
from __future__ import annotations

from repflow.family import Family, Method, Stage, methods_of
from repflow.families.text.params import REGISTERED_MODEL, SECTIONS, check

_STAGES = "repflow.families.text.stages"


def _methods() -> list[Method]:
    from repflow.families.text.generation import TEXT_METHODS

    return methods_of(TEXT_METHODS, "text generation", stage="train")


FAMILY = Family(
    name="text",
    summary="text generation: AMI (adversarial mutual information) against MLE and MMI reranking, on WordNet "
            "definition generation or a user's JSONL pairs",
    params=SECTIONS,
    check=check,
    flow="repflow.families.text.flow:text_flow",
    methods=_methods,
    algorithms=("ami", "decoding", "generation", "metrics", "models"),
    commands="repflow.families.text.commands:add_commands",
    stages=(
        Stage("prep", f"{_STAGES}.prep", "data/text/prep", ("seed", "text.prep"),
              summary="pairs (WordNet word → definition, or JSONL) split by source word, BPE tokenizer, token "
                      "shards"),
        Stage("train", f"{_STAGES}.train", "artifacts/text/train", ("seed", "text.train"), {"prep": "prep"},
              summary="forward (and backward) seq2seq by MLE, then AMI fine-tuning; resumable per phase"),
        Stage("evaluate", f"{_STAGES}.evaluate", "reports/text/evaluate", ("seed", "text.train", "text.evaluate"),
              {"prep": "prep", "models": "train"},
              summary="BLEU, distinct-1/2, generic rate, log Q(S|T̂) under a separate evaluator; samples"),
        Stage("register", f"{_STAGES}.register", "reports/text/register", ("text.register", "text.evaluate"),
              {"prep": "prep", "models": "train", "evaluation": "evaluate"},
              registers=(REGISTERED_MODEL,),
              summary="MLflow registry; the alias moves only when the validation BLEU beats its holder"),
    ),
)
