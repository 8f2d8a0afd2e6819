"""The CTR family: MARN (Li et al., WWW 2020: attention over item modalities plus modality-invariant features
learned adversarially with two discriminators) against MAN, DIN on concatenated modalities and a
single-discriminator ablation, on MovieLens-100K or a user's own interactions table.

prep (global time split, behaviour histories, item modalities fitted on train: ID, title words, genres,
year, statistics) → train (resumable) → evaluate (AUC / GAUC / logloss on val and test, AUC per popularity
bucket, attention per modality, DeepCTR-Torch's DIN as the peer) → register (``repflow-ctr``, the alias gated
on validation AUC). Params under ``ctr:``; ``repflow recommend USER_ID --top 10`` ranks unseen items for a
user with the registered model.

The declaration is read on first use of ``FAMILY``, so the models and metrics import with torch alone.
"""


def __getattr__(name: str):
    if name == "FAMILY":
        from repflow.families.ctr.declaration import FAMILY

        return FAMILY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
