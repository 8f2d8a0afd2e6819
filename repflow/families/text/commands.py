"""``repflow define "WORD"`` and ``repflow generate "SOURCE"``: generations of the registered text model
(its forward model, decoded by its method's rule: beam search, or MMI reranking with its backward model)."""
from __future__ import annotations

import argparse
import json

from repflow.family import positive_int

__all__ = ["add_commands", "load_registered_generator"]

DEFAULT_MODEL = "repflow-text-generator@champion"


def load_registered_generator(ref: str) -> dict:
    """What :func:`~repflow.families.text.generation.generate` needs from the registered version ``ref``: the
    forward (and backward) model rebuilt from their safetensors, the tokenizer, the method, the length limit
    and the source kind ("wordnet" or "jsonl"), plus ``ref`` as name/version."""
    from repflow.families.text.stages.train import load_models
    from repflow.families.text.tokenizer import TextTokenizer
    from repflow.registration import registered_checkpoint

    registered = registered_checkpoint(ref, family="text", what="a text model",
                                       needs=("forward.safetensors", "tokenizer.json"))
    ckpt, tags = registered.folder, registered.tags
    forward, backward, config = load_models(ckpt)
    return {"forward": forward, "backward": backward, "method": config["method"], "max_len": config["max_len"],
            "tokenizer": TextTokenizer.load(ckpt / "tokenizer.json"), "source": tags.get("repflow.text_source"),
            "mmi_lambda": float(tags.get("repflow.mmi_lambda", 0.5)), "ref": registered.ref}



def _print(args: argparse.Namespace, sources: list[str]) -> int:
    from repflow.families.text.generation import generate

    g = args.loaded
    out = generate(g["method"], g["forward"], g["tokenizer"], sources, backward=g["backward"], beam=args.beam,
                   show=args.show, mmi_lambda=g["mmi_lambda"], max_len=g["max_len"])
    if args.json:
        print(json.dumps({"model": g["ref"], "method": g["method"], "beam": args.beam,
                          "generations": [{"source": s, "outputs": t} for s, t in zip(sources, out.texts)]}))
        return 0
    for source, texts in zip(sources, out.texts):
        print(source)
        for rank, text in enumerate(texts, 1):
            print(f"  {rank}. {text}")
    return 0


def _load(args: argparse.Namespace) -> dict:
    from repflow import tracking
    from repflow.sources import SourceError

    if args.show > args.beam:
        raise SourceError(f"--show {args.show} is more than --beam {args.beam}: the beam holds only that many outputs")
    tracking.configure(args.workdir, read_only=True)
    args.loaded = load_registered_generator(args.model)
    return args.loaded


def _cmd_define(args: argparse.Namespace) -> int:
    from repflow.families.text.pairs import wordnet_source
    from repflow.sources import SourceError

    word = args.word.strip()
    if not word:
        raise SourceError("define: the word is empty")
    if _load(args)["source"] != "wordnet":
        raise SourceError(f"define: {args.loaded['ref']} was trained on JSONL pairs, not WordNet definitions; use "
                         f"repflow generate \"SOURCE\"")
    return _print(args, [wordnet_source(word, pos) for pos in args.pos])


def _cmd_generate(args: argparse.Namespace) -> int:
    from repflow.sources import SourceError

    if not args.source.strip():
        raise SourceError("generate: the source text is empty")
    _load(args)
    return _print(args, [args.source.strip()])


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=positive_int, default=8, help="beam size (default 8; MMI: the N-best it reranks)")
    p.add_argument("--show", type=positive_int, default=1, help="how many of the beam's best outputs (default 1)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="NAME@ALIAS or NAME/VERSION")
    p.add_argument("--workdir", default=".", help="project folder holding mlflow.db")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_commands(subparsers, cli) -> None:
    d = subparsers.add_parser("define", help="definitions of a word by the registered text model")
    d.add_argument("word")
    d.add_argument("--pos", nargs="+", choices=["n", "v", "a", "r"], default=["n"],
                   help="parts of speech to define it as (default n)")
    _common(d)
    d.set_defaults(func=_cmd_define)
    g = subparsers.add_parser("generate", help="the registered text model's output for one source text")
    g.add_argument("source")
    _common(g)
    g.set_defaults(func=_cmd_generate)
