"""AMI (Pan et al., "Adversarial Mutual Information for Text Generation", ICML 2020) at CPU scale: a synthetic
one-to-many positive control, then WordNet definition generation ("word (pos)" → its definition, held-out
words), MLE vs MLE+ vs MMI reranking vs AMI and its two ablations, each scored on beam and on sampled outputs.

Claims checked (abstract): AMI's outputs are less generic than MLE's, at BLEU at least as good as MLE's and
MMI reranking's.

**Positive control** (:mod:`repflow.families.text.synthetic`): 64 one-token sources, each with 3 specific
replies (its own) and 2 generic replies shared by all, every generic reply given more often per source than
every specific one, so MLE's beam output is a generic reply while log Q(S|T) favours the specific ones. If the
code is right, AMI must lower the generic rate there against MLE+ (as many plain MLE forward batches) and
raise the rate of right specific replies.

**Real task**: WordNet definitions of at most --max-words words, --pairs pairs of randomly chosen words,
split by word (data seed 0), a BPE tokenizer on the train split. Same start for every arm of a seed: one MLE
forward and one MLE backward model. "mle" decodes the forward model; "mmi" reranks its N-best with the
backward model (beam) or reranks --samples sampled candidates (sampled); "mle+" continues MLE for as many
forward batches as AMI takes; "ami" is full AMI for --ami-steps batches; "ami-noback" and "ami-nonoise" the
ablations (no demotion of fakes by the backward model / no noise-model update), same batches and draws (on
the synthetic control's first --syn-ablation-seeds seeds, on WordNet with --wordnet-ablations).
Each arm is scored on its beam-8 output per source and on --samples sampled outputs per source (temperature
1). Generic-ness is measured by the references, not a fixed list: an output is generic when its word
bigrams' share of references holding them (document frequency over every reference of the scored sources)
exceeds that of every reference of its own source (:func:`~repflow.families.text.metrics.reference_generic_rate`).

Floor / ceiling: BLEU — MLE+ against a constant output (the most frequent training definition for every
source) must be separated by more than the smallest effect; generic rate — MLE+ against one reference per
source (generic rate 0 by construction) must leave room (else "ceiling").

    python -m benchmarks.ami [--seeds 5] [--ami-steps 3200] [--wordnet-ablations] [--rows ami_rows.jsonl]
"""
from __future__ import annotations

import argparse
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402

from benchmarks._common import (  # noqa: E402
    Tested, append_rows, interval_text, mean_std, read_rows, write_claims, write_results)
from repflow.families.text.ami import AMIConfig, make_batches, mle_loss, mmi_order, swap, train_ami, train_mle  # noqa: E402
from repflow.families.text.decoding import Hypotheses, beam_search, sample_decode  # noqa: E402
from repflow.families.text.generation import TEXT_METHODS  # noqa: E402
from repflow.families.text.metrics import (  # noqa: E402
    bleu, distinct_n, excess_generality, generic_rate, mean_backward_log_likelihood, reference_generic_rate)
from repflow.families.text.models import LatentNoise, build_seq2seq, pad_batch, sequence_log_prob  # noqa: E402
from repflow.families.text.pairs import choose_by_group, split_by_group, wordnet_pairs  # noqa: E402
from repflow.families.text.synthetic import one_to_many  # noqa: E402
from repflow.families.text.tokenizer import PAD, TextTokenizer, train_tokenizer  # noqa: E402
from repflow.families.text.wordnet import read_wordnet  # noqa: E402
from repflow.verdict import Claim, positive_control, separation_check  # noqa: E402

ARMS = ("mle", "mle+", "mmi", "ami", "ami-noback", "ami-nonoise")
SYNTHETIC_ARMS = ("mle", "mle+", "ami", "ami-noback", "ami-nonoise")
ABLATIONS = {"ami": {}, "ami-noback": {"backward_adversarial": False}, "ami-nonoise": {"noise_step": False}}
DECODINGS = ("beam", "sampled")
EVALUATOR_SEED = 1000

PAPER = TEXT_METHODS["ami"].paper
# declared before the run: (method, reference, metric) → claim, once per decoding (beam: the old ids)
CLAIM_BASES = {
    ("ami", "mle+", "generic_rate"): ("text.ami_less_generic", "AMI's outputs are less generic (by the references' "
                                      "n-gram frequency) than MLE's trained for as many forward batches",
                                      "generic-output rate (reference n-gram frequency)", "lower", 0.02, "share"),
    ("ami", "mle+", "bleu"): ("text.ami_bleu_vs_mle", "AMI outperforms MLE (as many forward batches) in BLEU",
                              "BLEU", "higher", 0.5, "BLEU"),
    ("ami", "mmi", "bleu"): ("text.ami_bleu_vs_mmi", "AMI outperforms MMI reranking in BLEU", "BLEU", "higher",
                             0.5, "BLEU"),
}
CLAIMS = {(m, r, k, d): Claim(cid + ("" if d == "beam" else "_sampled"), "text", PAPER,
                              f"{text} ({'beam-8' if d == 'beam' else 'sampled'} outputs).", metric, direction,
                              smallest, unit, ("ami",))
          for (m, r, k), (cid, text, metric, direction, smallest, unit) in CLAIM_BASES.items() for d in DECODINGS}


def judged(payload: dict) -> list[Tested]:
    """The declared claims from a run's payload (``per_seed`` rows of both tasks and ``args``, as ami.json
    stores them). Positive control: on the synthetic task AMI − MLE+ lowers the generic rate (generic claims)
    or raises the rate of right specific replies (BLEU claims), in the claim's decoding. Floor / ceiling: see
    the module notes."""
    rows = payload["per_seed"]
    real = {(r["arm"], r["decoding"], r["seed"]): r for r in rows if r["task"] == "wordnet"}
    syn = {(r["arm"], r["decoding"], r["seed"]): r for r in rows if r["task"] == "synthetic"}
    seeds = sorted({s for _, _, s in real})
    syn_seeds = sorted({s for _, _, s in syn})
    a = payload["args"]
    scale = {"data": f"WordNet definitions, {a['pairs']} pairs, {a['test_sources']} test sources; synthetic "
                     f"one-to-many control (64 sources)",
             "model": f"GRU seq2seq, embed {a['embed']}, hidden {a['hidden']}",
             "steps": f"MLE {a['epochs']} epochs + AMI {a['ami_steps']} batches of {a['ami_batch']}",
             "device": "cpu"}
    out = []
    for (m, r, k, d), claim in CLAIMS.items():
        if k == "generic_rate":
            control = positive_control([syn["mle+", d, s]["generic_rate"] - syn["ami", d, s]["generic_rate"]
                                        for s in syn_seeds],
                                       name=f"synthetic one-to-many: MLE+ − AMI generic rate ({d})")
            floor = separation_check([-real["mle+", d, s]["generic_rate"] for s in seeds],
                                     [-real["reference", d, s]["generic_rate"] for s in seeds], claim.smallest_effect,
                                     name=f"MLE+ vs one reference per source, generic rate ({d})", best=0.0)
        else:
            control = positive_control([syn["ami", d, s]["specific_rate"] - syn["mle+", d, s]["specific_rate"]
                                        for s in syn_seeds],
                                       name=f"synthetic one-to-many: AMI − MLE+ right specific replies ({d})")
            floor = separation_check([real["constant", d, s]["bleu"] for s in seeds],
                                     [real["mle+", d, s]["bleu"] for s in seeds], claim.smallest_effect,
                                     name=f"constant output vs MLE+, BLEU ({d})")
        out.append(Tested(claim, [real[m, d, s][k] - real[r, d, s][k] for s in seeds], (control, floor), scale,
                          {m: [real[m, d, s][k] for s in seeds], r: [real[r, d, s][k] for s in seeds]}))
    return out


# --------------------------------------------------------------------------------------------------------
# shared by both tasks

def build(vocab: int, a: dict, seed: int):
    torch.manual_seed(seed)
    return build_seq2seq("gru_attention", vocab, embed=a["embed"], hidden=a["hidden"], dropout=0.1)


def rows_of(tokens: torch.Tensor) -> list[list[int]]:
    return [[t for t in row.tolist() if t != PAD] for row in tokens]


@torch.no_grad()
def decode(arm: str, forward, backward, source_ids: list[list[int]], a: dict, seed: int) -> dict[str, list]:
    """{"beam": one output per source, "sampled": --samples outputs per source (source-major)}; MMI reranks
    the beam's N-best, or the samples (keeping the best one, repeated --samples times so every arm is
    scored on as many outputs)."""
    forward.eval()
    backward.eval()
    source = pad_batch(source_ids)
    k, n = a["samples"], len(source_ids)
    hypotheses = beam_search(forward, source, beam=a["beam"], max_len=a["max_len"])
    tokens = hypotheses.tokens
    if arm == "mmi":
        order = mmi_order(backward, hypotheses, source, lam=a["mmi_lambda"])
        tokens = tokens.gather(1, order[..., None].expand_as(tokens))
    beam = rows_of(tokens[:, 0])
    repeated = source.repeat_interleave(k, 0)
    samples = sample_decode(forward, repeated, max_len=a["max_len"], generator=torch.Generator().manual_seed(seed))
    if arm == "mmi":
        width = samples.shape[1]
        drawn = Hypotheses(samples.reshape(n, k, width), sequence_log_prob(forward, repeated, samples).reshape(n, k),
                           torch.zeros(n, k))
        best = mmi_order(backward, drawn, source, lam=a["mmi_lambda"])[:, 0]
        samples = drawn.tokens[torch.arange(n), best].repeat_interleave(k, 0)
    return {"beam": beam, "sampled": rows_of(samples)}


def continue_mle(forward, train: list, forward_batches: int, a: dict, seed: int) -> None:
    """MLE+: ``forward_batches`` more batches of plain MLE at AMI's batch size and learning rate."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(forward.parameters(), lr=a["ami_lr"])
    forward.train()
    done = 0
    while done < forward_batches:
        for source, target in make_batches(train, a["ami_batch"], generator, a["max_len"]):
            if done == forward_batches:
                break
            loss = mle_loss(forward, source, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(forward.parameters(), 1.0)
            optimizer.step()
            done += 1
    forward.eval()


def train_arms(forward, backward, train: list, a: dict, seed: int, steps: int, finish, ablations: bool) -> dict:
    """MLE+, AMI and (``ablations``) its ablations from the same pretrained pair, same batches and draws;
    ``finish(arm, forward, backward, train_s)`` scores each. Returns the AMI reward traces."""
    config = AMIConfig(max_len=a["max_len"], lr=a["ami_lr"], samples=a["k"], noise_scale=a["noise_scale"])
    cycle = 2 * config.gm_iter_count + config.noise_batches
    forward_batches = steps // cycle * config.gm_iter_count + min(steps % cycle, config.gm_iter_count)
    f_state = {k: v.clone() for k, v in forward.state_dict().items()}
    b_state = {k: v.clone() for k, v in backward.state_dict().items()}
    t0 = time.process_time()
    continue_mle(forward, train, forward_batches, a, seed + 7)
    finish("mle+", forward, backward, time.process_time() - t0)
    traces = {}
    for arm, switches in ABLATIONS.items() if ablations else [("ami", {})]:
        forward.load_state_dict(f_state)
        backward.load_state_dict(b_state)
        torch.manual_seed(seed + 200)
        noise = LatentNoise(a["hidden"])
        t0 = time.process_time()
        history = train_ami(forward, backward, noise, train, steps=steps, batch_size=a["ami_batch"],
                            config=replace(config, **switches), seed=seed + 300)
        finish(arm, forward, backward, time.process_time() - t0)
        rewards = [h["reward"] for h in history if "reward" in h]
        fifth = max(1, len(rewards) // 5)
        traces[arm] = {"reward_first_fifth": sum(rewards[:fifth]) / fifth,
                       "reward_last_fifth": sum(rewards[-fifth:]) / fifth, "forward_batches": forward_batches}
    forward.load_state_dict(f_state)
    backward.load_state_dict(b_state)
    return traces


# --------------------------------------------------------------------------------------------------------
# the synthetic positive control

def synthetic_seed(seed: int, a: dict) -> list[dict]:
    task = one_to_many()
    s = {**a, "max_len": 8}
    forward, backward = build(task.vocab_size, a, seed), build(task.vocab_size, a, seed + 100)
    t0 = time.process_time()
    train_mle(forward, task.pairs, epochs=a["syn_epochs"], batch_size=32, lr=5e-3, seed=seed)
    train_mle(backward, swap(task.pairs), epochs=a["syn_epochs"], batch_size=32, lr=5e-3, seed=seed + 100)
    pretrain_s = time.process_time() - t0
    rows = []

    def finish(arm, f, b, train_s):
        for decoding, outputs in decode(arm, f, b, task.sources, s, seed + 500).items():
            k = 1 if decoding == "beam" else a["samples"]
            kinds = [kind for j in range(k) for kind in task.kinds(outputs[j::k])]
            rows.append({"task": "synthetic", "arm": arm, "decoding": decoding, "seed": seed,
                         "train_cpu_s": pretrain_s + train_s,
                         **{f"{x}_rate": kinds.count(x) / len(kinds) for x in ("generic", "specific", "invalid")}})

    finish("mle", forward, backward, 0.0)
    traces = train_arms(forward, backward, task.pairs, s, seed, a["syn_steps"], finish,
                        ablations=seed < a["syn_ablation_seeds"])
    for row in rows:
        row["trace"] = traces.get(row["arm"])
    return rows


# --------------------------------------------------------------------------------------------------------
# WordNet

def prepare(a: dict) -> dict:
    """Pairs from randomly chosen WordNet words until --pairs, split by word; tokenizer on the train split."""
    pairs = wordnet_pairs(read_wordnet(), max_target_words=a["max_words"])
    chosen = choose_by_group(pairs, a["pairs"], seed=0)
    splits = split_by_group(chosen, {"train": 0.9, "test": 0.1}, seed=0)
    tokenizer = train_tokenizer([t for p in splits["train"] for t in (p.source, p.target)], vocab_size=a["vocab"])
    refs = defaultdict(list)
    for p in splits["test"]:
        refs[p.source].append(tokenizer.normalize(p.target))
    sources = sorted(refs)
    random.Random(1).shuffle(sources)
    sources = sources[:a["test_sources"]]
    encode = tokenizer.encode
    train = [(encode(p.source)[:a["max_len"]], encode(p.target)[:a["max_len"]]) for p in splits["train"]]
    most_frequent = Counter(tuple(t) for _, t in train).most_common(1)[0][0]
    return {"tokenizer": tokenizer, "train": train, "test_sources": sources, "test_refs": [refs[s] for s in sources],
            "test_ids": [encode(s)[:a["max_len"]] for s in sources], "constant": list(most_frequent),
            "counts": {"pairs": len(chosen), "train": len(splits["train"]), "test_pairs": len(splits["test"]),
                       "test_sources": len(sources), "vocab": tokenizer.vocab_size}}


def score(texts: list[str], ids: list[list[int]], refs: list[list[str]], source_ids: list[list[int]], evaluator,
          frozen_backward) -> dict:
    """The metrics of outputs (``refs[i]`` and ``source_ids[i]`` belong to output i)."""
    return {"bleu": bleu(texts, refs), "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "generic_rate": reference_generic_rate(texts, refs), "excess_generality": excess_generality(texts, refs),
            "repeated_rate": generic_rate(texts),
            "log_q": mean_backward_log_likelihood(evaluator, source_ids, ids),
            "reward": mean_backward_log_likelihood(frozen_backward, source_ids, ids),
            "mean_length": sum(len(t.split()) for t in texts) / len(texts)}


def wordnet_seed(seed: int, data: dict, evaluator, a: dict) -> list[dict]:
    tokenizer: TextTokenizer = data["tokenizer"]
    vocab, train, k = tokenizer.vocab_size, data["train"], a["samples"]
    t0 = time.process_time()
    forward, backward = build(vocab, a, seed), build(vocab, a, seed + 100)
    train_mle(forward, train, epochs=a["epochs"], lr=a["lr"], seed=seed)
    train_mle(backward, swap(train), epochs=a["epochs"], lr=a["lr"], seed=seed + 100)
    pretrain_s = time.process_time() - t0
    frozen_backward = build(vocab, a, seed + 100)
    frozen_backward.load_state_dict(backward.state_dict())
    frozen_backward.eval()
    refs, source_ids = data["test_refs"], data["test_ids"]
    rows = []

    def add(arm: str, decoding: str, ids: list[list[int]], train_s: float) -> None:
        times = 1 if decoding == "beam" else k
        texts = [tokenizer.decode(o) for o in ids]
        rep_refs = [r for r in refs for _ in range(times)]
        rep_src = [s for s in source_ids for _ in range(times)]
        rows.append({"task": "wordnet", "arm": arm, "decoding": decoding, "seed": seed, "train_cpu_s": train_s,
                     **score(texts, ids, rep_refs, rep_src, evaluator, frozen_backward),
                     "samples": texts[:6 * times:times]})

    def finish(arm, f, b, train_s):
        for decoding, ids in decode(arm, f, b, source_ids, a, seed + 500).items():
            add(arm, decoding, ids, pretrain_s + train_s)

    for decoding in DECODINGS:
        times = 1 if decoding == "beam" else k
        add("constant", decoding, [data["constant"]] * (len(source_ids) * times), 0.0)
        add("reference", decoding, [tokenizer.encode(r[0]) for r in refs for _ in range(times)], 0.0)
    finish("mle", forward, backward, 0.0)
    finish("mmi", forward, backward, 0.0)
    traces = train_arms(forward, backward, train, a, seed, a["ami_steps"], finish, a["wordnet_ablations"])
    for row in rows:
        row["trace"] = traces.get(row["arm"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=8000)
    ap.add_argument("--max-words", type=int, default=10)
    ap.add_argument("--max-len", type=int, default=24)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--test-sources", type=int, default=200)
    ap.add_argument("--embed", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ami-steps", type=int, default=3200, help="AMI batches on WordNet (10× the 320 before)")
    ap.add_argument("--ami-lr", type=float, default=2e-4)
    ap.add_argument("--ami-batch", type=int, default=16)
    ap.add_argument("--k", type=int, default=5, help="AMI samples per source (the official default 5)")
    ap.add_argument("--noise-scale", type=float, default=0.1, help="λ in h + λε (official 1.0; see AMIConfig)")
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4, help="sampled outputs scored per source")
    ap.add_argument("--mmi-lambda", type=float, default=0.5)
    ap.add_argument("--syn-epochs", type=int, default=40, help="MLE epochs on the synthetic control")
    ap.add_argument("--syn-steps", type=int, default=1000, help="AMI batches on the synthetic control")
    ap.add_argument("--syn-ablation-seeds", type=int, default=5, help="synthetic seeds that also run the "
                    "two ablations (the first ones)")
    ap.add_argument("--wordnet-ablations", action="store_true", help="also the two ablations on WordNet (the "
                    "synthetic control runs them on --syn-ablation-seeds)")
    ap.add_argument("--rows", type=Path, default=None, help="JSON-lines file of finished (task, seed) rows (reused, "
                                                            "appended)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started, cpu0 = time.time(), time.process_time()
    a = dict(vars(args))
    a.pop("rows")
    done = read_rows(args.rows)
    finished = {(r["task"], r["seed"]) for r in done}
    results = list(done)
    for seed in range(args.seeds):
        if ("synthetic", seed) not in finished:
            rows = synthetic_seed(seed, a)
            append_rows(args.rows, rows)
            results += rows
            print(f"[synthetic seed {seed}] " + "; ".join(
                f"{r['arm']}/{r['decoding']} generic {r['generic_rate']:.3f} specific {r['specific_rate']:.3f}"
                for r in rows), flush=True)
    data = prepare(a)
    print(data["counts"], flush=True)
    evaluator = build(data["tokenizer"].vocab_size, a, EVALUATOR_SEED)
    train_mle(evaluator, swap(data["train"]), epochs=a["epochs"], lr=a["lr"], seed=EVALUATOR_SEED)
    evaluator.eval()
    for seed in range(args.seeds):
        if ("wordnet", seed) not in finished:
            rows = wordnet_seed(seed, data, evaluator, a)
            append_rows(args.rows, rows)
            results += rows
            for r in rows:
                print(f"[wordnet seed {seed} {r['arm']}/{r['decoding']}] BLEU {r['bleu']:.2f} generic "
                      f"{r['generic_rate']:.3f} excess {r['excess_generality']:+.3f} d2 {r['distinct_2']:.3f} "
                      f"logQ {r['log_q']:.2f}", flush=True)
    write(results, data, args, time.time() - started, time.process_time() - cpu0)


def write(results: list[dict], data: dict, args, wall_s: float, cpu_s: float) -> None:
    seeds = list(range(args.seeds))
    syn = {(r["arm"], r["decoding"], r["seed"]): r for r in results if r["task"] == "synthetic"}
    real = {(r["arm"], r["decoding"], r["seed"]): r for r in results if r["task"] == "wordnet"}
    keys = ("bleu", "generic_rate", "excess_generality", "repeated_rate", "distinct_2", "log_q", "reward",
            "mean_length", "train_cpu_s")
    table = []
    arms = [arm for arm in ("constant", "reference", *ARMS) if (arm, "beam", 0) in real]
    for arm in arms:
        for d in DECODINGS:
            row = {"arm": f"{arm} ({d})"}
            for key in keys:
                m, sd = mean_std([real[arm, d, s][key] for s in seeds])
                row[key] = f"{m:.3f} ± {sd:.3f}" if key != "train_cpu_s" else f"{m:.0f} ± {sd:.0f}"
            table.append(row)
    notes = [f"Protocol: WordNet 3.0 definitions of at most {args.max_words} words, {data['counts']['pairs']} pairs "
             f"of randomly chosen words, split 90/10 by word (data seed 0), {data['counts']['test_sources']} held-out "
             f"sources, each scored against all its definitions; BPE vocabulary {data['counts']['vocab']}; GRU seq2seq "
             f"with attention, embed {args.embed}, hidden {args.hidden}, dropout 0.1; MLE {args.epochs} epochs, Adam "
             f"{args.lr}, batch 64; AMI {args.ami_steps} batches of {args.ami_batch} (Adam {args.ami_lr}, K={args.k}, "
             f"λ={args.noise_scale}, official schedule 8/8/4: {args.ami_steps // 20 * 4} adversarial forward "
             f"updates), MLE+ as many forward batches of plain MLE; beam {args.beam} and {args.samples} samples per "
             f"source (MMI: the best of {args.samples} samples by Eq. MMI, λ={args.mmi_lambda}); generic rate = share "
             f"of outputs whose bigrams' reference document frequency exceeds that of every reference of their source; "
             f"excess generality = that frequency minus the mean of the source's references'; repeated rate = the "
             f"old metric (share among the 10 most repeated outputs); log Q under an evaluator trained from another "
             f"seed; reward = log Q(S|T̂) under the seed's frozen pretrained backward model (what AMI's forward "
             f"step climbs); seeds {seeds}; one process, one torch thread; rewards computed with dropout off.",
             f"Synthetic control: 64 one-token sources, 3 specific replies each (2 copies) and 2 generic replies "
             f"(3 copies per source); MLE {args.syn_epochs} epochs, AMI {args.syn_steps} batches of {args.ami_batch}."]
    for arm in SYNTHETIC_ARMS:
        for d in DECODINGS:
            arm_seeds = [s for s in seeds if (arm, d, s) in syn]
            g = [syn[arm, d, s]["generic_rate"] for s in arm_seeds]
            sp = [syn[arm, d, s]["specific_rate"] for s in arm_seeds]
            notes.append(f"Synthetic {arm} ({d}, seeds {arm_seeds}): generic rate {mean_std(g)[0]:.3f} ± "
                         f"{mean_std(g)[1]:.3f}, right specific {mean_std(sp)[0]:.3f} ± {mean_std(sp)[1]:.3f}")
    for arm, base in (("ami", "mle+"), ("ami-noback", "mle+"), ("ami-nonoise", "mle+"), ("ami", "ami-noback"),
                      ("ami", "ami-nonoise")):
        for d in DECODINGS:
            diff = [syn[arm, d, s]["generic_rate"] - syn[base, d, s]["generic_rate"] for s in seeds
                    if (arm, d, s) in syn and (base, d, s) in syn]
            notes.append(f"Synthetic {arm} − {base} generic rate ({d}): {mean_std(diff)[0]:+.3f} "
                         f"({interval_text(diff)})")
    for key in ("generic_rate", "excess_generality", "bleu", "distinct_2", "log_q", "reward"):
        for arm, base in (("ami", "mle+"), ("ami", "mmi"), ("ami-noback", "mle+"), ("ami-nonoise", "mle+")):
            for d in DECODINGS if arm in arms else ():
                diff = [real[arm, d, s][key] - real[base, d, s][key] for s in seeds]
                notes.append(f"WordNet {arm} − {base} {key} ({d}): {mean_std(diff)[0]:+.4f} ({interval_text(diff)})")
    for arm in ("reference", *ARMS):
        if (arm, "beam", 0) in real:
            notes.append(f"{arm} beam outputs (seed 0): " + " | ".join(map(repr, real[arm, "beam", 0]["samples"][:5])))
    notes.append(f"Test sources shown: {data['test_sources'][:5]}")
    notes.append(f"Wall time {wall_s:.0f} s, CPU {cpu_s:.0f} s of this invocation (resumed rows not counted).")
    payload = {"per_seed": results, "args": vars(args) | {"rows": None}}
    notes += write_claims(judged(payload), "ami")
    write_results("ami", "AMI: synthetic one-to-many control and WordNet definition generation (CPU scale)", table,
                  notes, extra={"per_seed": results, "counts": data["counts"], "args": payload["args"]})


if __name__ == "__main__":
    main()
