"""The text family: AMI (Pan et al., ICML 2020: adversarial mutual information between source and target)
against MLE and MMI reranking, for definition generation from WordNet ("word (pos)" → its gloss) or a user's
JSONL pairs.

prep (pairs split by source word, a BPE tokenizer trained on the training split, token shards) → train
(forward and backward GRU seq2seq by MLE, then AMI; resumable per phase) → evaluate (BLEU, distinct-1/2,
generic-output rate, log Q(S|T̂) under a separate backward evaluator, samples) → register
(``repflow-text-generator``, the alias gated on validation BLEU). Params under ``text:``; ``repflow define
"WORD"`` and ``repflow generate "SOURCE"`` print generations of the registered model.

The declaration is read on first use of ``FAMILY``, so the models and metrics import with torch alone.
"""


def __getattr__(name: str):
    if name == "FAMILY":
        from repflow.families.text.declaration import FAMILY

        return FAMILY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
