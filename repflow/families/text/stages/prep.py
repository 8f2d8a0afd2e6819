"""text.prep: source → target pairs (WordNet's "word (pos)" → definition, or a user's JSONL file), split by
source word so that no word is in two splits, a BPE tokenizer trained on the training split, and shards of
token ids.

Written: ``tokenizer.json`` and the shards of splits ``train`` / ``valid`` / ``test``, each sample with
``source.tokens`` and ``target.tokens`` (int32 ids, no <bos>/<eos>) and ``pair.json`` ({"source", "target"}
as text, the references BLEU is scored against). A pair whose source or target is longer than
``text.prep.max_len`` tokens is skipped and counted; for a JSONL file, lines without the mapped fields or with
an empty side are too, and more than ``max_skipped_share`` of the lines skipped is an error naming the file
and its first bad lines.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import mlflow

from repflow.families.text.pairs import (PairsError, choose_by_group, read_jsonl_pairs,
                                         split_by_group, wordnet_pairs)
from repflow.families.text.tokenizer import UNK, TextTokenizer, train_tokenizer
from repflow.families.text.wordnet import WORDNET_DIR, read_wordnet
from repflow.manifest import read_manifest
from repflow.report import bar_plot, markdown_table
from repflow.shards import ShardReader, write_split
from repflow.sources import SourceError
from repflow.stage import StageContext, StageSummary

log = logging.getLogger("repflow.text.prep")

SPLITS = ("train", "valid", "test")
MEMBERS = {"source.tokens": "tokens", "target.tokens": "tokens", "pair.json": "json"}


def _read_pairs(cfg):
    """(pairs, skip report or None, where they came from)."""
    if cfg.source == "wordnet":
        folder = Path(cfg.path).expanduser() if cfg.path else WORDNET_DIR
        try:
            definitions = read_wordnet(folder, tuple(cfg.pos))
        except FileNotFoundError as exc:
            raise SourceError(f"text.prep.source wordnet: {exc}") from None
        return wordnet_pairs(definitions, cfg.max_target_words), None, str(folder)
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise SourceError(f"text.prep.path: pairs file {path} does not exist")
    pairs, report = read_jsonl_pairs(path, source_field=cfg.source_field, target_field=cfg.target_field,
                                     max_source_len=cfg.max_len, max_skipped_share=cfg.max_skipped_share)
    return pairs, report, str(path)


def run(ctx: StageContext) -> StageSummary:
    params, tmp = ctx.params, ctx.tmp
    cfg = params.text.prep
    pairs, report, origin = _read_pairs(cfg)
    pairs = choose_by_group(pairs, cfg.max_pairs, seed=params.seed)
    fractions = {"train": 1.0 - cfg.valid_fraction - cfg.test_fraction, "valid": cfg.valid_fraction,
                 "test": cfg.test_fraction}
    splits = split_by_group(pairs, fractions, seed=params.seed)
    tokenizer = train_tokenizer((t for p in splits["train"] for t in (p.source, p.target)),
                                vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency)
    tokenizer.save(tmp / "tokenizer.json")
    too_long, rows, samples = Counter(), [], {}
    for split, part in splits.items():
        kept = []
        for p in part:
            source, target = tokenizer.encode(p.source), tokenizer.encode(p.target)
            if len(source) > cfg.max_len or len(target) > cfg.max_len:
                too_long[split] += 1
                continue
            kept.append({"source.tokens": source, "target.tokens": target,
                         "pair.json": {"source": p.source, "target": p.target}})
        samples[split] = kept
    if report is not None:
        for split, n in too_long.items():
            report.skipped[f"longer than {cfg.max_len} tokens"] += n
        report.kept -= sum(too_long.values())
        if report.skipped_share > cfg.max_skipped_share:
            raise PairsError(f"{report.describe()}; more than {cfg.max_skipped_share:.0%} of the lines skipped "
                             f"(text.prep.max_len = {cfg.max_len} tokens, max_skipped_share)")
    ctx.meta.update({"source": cfg.source, "origin": origin, "max_len": cfg.max_len,
                     "vocab_size": tokenizer.vocab_size, "splits": {}})
    for split in SPLITS:
        if not samples[split]:
            raise PairsError(f"{origin}: no {split} pair within {cfg.max_len} tokens (of {len(splits[split])})")
        ctx.meta["splits"][split] = write_split(tmp, split, samples[split], MEMBERS, shard_size=cfg.shard_size,
                                                show_progress=True)
        kept = samples[split]
        unknown = sum(t == UNK for s in kept for t in s["source.tokens"] + s["target.tokens"])
        tokens = sum(len(s["source.tokens"]) + len(s["target.tokens"]) for s in kept)
        rows.append({"split": split, "pairs": len(kept), "sources": len({s["pair.json"]["source"] for s in kept}),
                     "skipped_too_long": too_long[split],
                     "source_tokens": sum(len(s["source.tokens"]) for s in kept) / len(kept),
                     "target_tokens": sum(len(s["target.tokens"]) for s in kept) / len(kept),
                     "unk_share": unknown / max(tokens, 1)})
    ctx.meta["skipped"] = dict(report.skipped) if report else {"longer than max_len": sum(too_long.values())}
    mlflow.set_tags({"repflow.source": cfg.source, "repflow.source_origin": origin})
    bar_plot(list(SPLITS), {"pairs": [r["pairs"] for r in rows], "distinct sources": [r["sources"] for r in rows]},
             tmp / "splits.png", ylabel="count", title=f"text.prep {cfg.source}: split by source word")
    log.info("text.prep: %s, vocabulary %d; train / valid / test pairs %s", origin, tokenizer.vocab_size,
             "/".join(str(r["pairs"]) for r in rows))
    examples = [{"source": s["pair.json"]["source"], "target": s["pair.json"]["target"],
                 "tokens": " ".join(tokenizer.tokens(s["pair.json"]["target"]))} for s in samples["train"][:8]]
    md = (f"- pairs: **{cfg.source}** ({origin}), split by source word; BPE vocabulary {tokenizer.vocab_size} "
          f"trained on the training split; at most {cfg.max_len} tokens a side"
          + (f"\n- {report.describe()}" if report else "") + "\n\n" + markdown_table(rows, floatfmt="{:.3f}")
          + "\n\n" + markdown_table(examples))
    return StageSummary(metrics={f"{r['split']}_pairs": r["pairs"] for r in rows}
                        | {"vocab_size": tokenizer.vocab_size}, markdown=md, plots=["splits.png"])


def load_prepared(folder: Path) -> tuple[ShardReader, TextTokenizer]:
    """(the verified shards, the tokenizer) of a text.prep output."""
    read_manifest(folder, verify=False, stage="text.prep")
    return ShardReader(folder), TextTokenizer.load(folder / "tokenizer.json")


def token_pairs(shards: ShardReader, split: str) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) of every pair of ``split``, in write order."""
    return [(s["source.tokens"].tolist(), s["target.tokens"].tolist()) for s in shards.stream(split)]


def references(shards: ShardReader, split: str) -> dict[str, list[str]]:
    """Source text → every target text of ``split`` for it (a word with several senses has several)."""
    refs: dict[str, list[str]] = {}
    for s in shards.stream(split):
        refs.setdefault(s["pair.json"]["source"], []).append(s["pair.json"]["target"])
    return refs
