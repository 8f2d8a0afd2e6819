"""``repflow compare``: the image family's on-demand compare stage (and the stages it reads from), its choices
given as ``compare.*`` overrides so that the stage key, MLflow and the report record them like any param."""
from __future__ import annotations

import argparse

from repflow.family import PARADIGMS

__all__ = ["add_commands"]


def _compare(args: argparse.Namespace, run) -> int:
    if args.paradigm:
        from repflow.families.image.train_methods import TRAIN_METHODS

        args.methods = [n for n in TRAIN_METHODS if TRAIN_METHODS[n].paradigm in args.paradigm]
    given = [("compare.methods", args.methods), ("compare.seeds", args.seeds), ("compare.epochs", args.epochs),
             ("compare.seconds", args.seconds)]
    overrides = [f"{key}={list(value) if isinstance(value, list) else value}" for key, value in given
                 if value is not None]
    if args.seconds is not None:
        overrides.append("compare.epochs=null")
    if args.epochs is not None:
        overrides.append("compare.seconds=null")
    args.P = overrides + args.P
    args.family, args.stage = "image", ["compare"]
    return run(args)


def add_commands(subparsers, cli) -> None:
    c = subparsers.add_parser("compare", help="train SSL methods of every paradigm on the same data, encoder and "
                                              "budget; probe each the same way; one table (the image family's "
                                              "compare stage)")
    which = c.add_mutually_exclusive_group()
    which.add_argument("--methods", nargs="+", metavar="METHOD", help="training methods (default: compare.methods)")
    which.add_argument("--paradigm", nargs="+", choices=PARADIGMS,
                       help="every training method of these SSL paradigms (repflow families --paradigm lists them)")
    c.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="seeds, one arm per method and seed")
    budget = c.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, help="equal budget in epochs")
    budget.add_argument("--seconds", type=float, help="equal budget in CPU seconds of training per arm")
    c.add_argument("--runner", default="local", choices=["local", "ray"], help="as for repflow run")
    cli.common(c)
    c.set_defaults(func=lambda args: _compare(args, cli.run))
