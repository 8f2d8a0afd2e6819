"""``repflow recommend USER_ID --top K``: the registered click model's top unseen items for a user it knows
(:mod:`repflow.families.ctr.recommend`), with titles and click probabilities."""
from __future__ import annotations

import argparse
import json

from repflow.family import positive_int

__all__ = ["add_commands", "load_registered_recommender"]

DEFAULT_MODEL = "repflow-ctr@champion"


def load_registered_recommender(ref: str) -> dict:
    """What :func:`~repflow.families.ctr.recommend.recommend` needs from the registered version ``ref``: the model
    (rebuilt from its safetensors over its feature space), the space, interactions, catalogue and history
    length, plus its ``ref`` as name/version."""
    from repflow.families.ctr.features import load_space
    from repflow.families.ctr.stages.register import CHECKPOINT_FILES, PREP_FILES
    from repflow.families.ctr.stages.train import load_model
    from repflow.families.ctr.tables import INTERACTION_COLUMNS, ITEM_COLUMNS, read_parquet
    from repflow.registration import registered_checkpoint

    registered = registered_checkpoint(ref, family="ctr", what="a click model", needs=CHECKPOINT_FILES + PREP_FILES)
    ckpt = registered.folder
    model, config = load_model(ckpt, ckpt)
    return {"model": model, "config": config, "space": load_space(ckpt),
            "interactions": read_parquet(ckpt / "interactions.parquet", INTERACTION_COLUMNS),
            "items": read_parquet(ckpt / "catalogue.parquet", ITEM_COLUMNS),
            "history": int(registered.tags.get("repflow.history", 20)), "ref": registered.ref}



def _cmd_recommend(args: argparse.Namespace) -> int:
    from repflow import tracking
    from repflow.families.ctr.recommend import recommend

    tracking.configure(args.workdir, read_only=True)
    r = load_registered_recommender(args.model)
    ranked = recommend(r["model"], r["space"], r["interactions"], r["items"], args.user, top=args.top,
                       history_len=r["history"])
    if args.json:
        print(json.dumps({"user": args.user, "model": r["ref"], "items": ranked.to_dicts()}))
        return 0
    for row in ranked.iter_rows(named=True):
        print(f"{row['rank']:>3}  {row['score']:.4f}  {row['item']}  {row['title']}")
    return 0


def add_commands(subparsers, cli) -> None:
    r = subparsers.add_parser("recommend", help="a user's top unseen items by the registered click model")
    r.add_argument("user", help="user id as in the interactions (ml-100k: 1..943)")
    r.add_argument("--top", type=positive_int, default=10, help="how many items (default 10)")
    r.add_argument("--model", default=DEFAULT_MODEL, help="NAME@ALIAS or NAME/VERSION")
    r.add_argument("--workdir", default=".", help="project folder holding mlflow.db")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(func=_cmd_recommend)
