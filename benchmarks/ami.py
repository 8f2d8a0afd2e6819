"""AMI at CPU scale on WordNet definition generation ("word (pos)" → its definition, held-out words): MLE vs MMI
reranking vs AMI, with BLEU, distinct-1/2, the generic-output rate, mean log Q(S|T̂) under a separately trained
backward evaluator, and generation tokens/s, over seeds.

Claim checked (Pan et al., "Adversarial Mutual Information for Text Generation", ICML 2020, abstract): AMI
lowers the generic rate and raises distinct-n and log Q(S|T̂) over MLE, at comparable BLEU; and is at least as
good as MMI reranking without its cost.

Same start for every arm of a seed: one data set (WordNet pairs with definitions of at most --max-words words,
--pairs pairs from randomly chosen words, split by word with data seed 0), one tokenizer (trained on the train
split), one MLE forward and one MLE backward model (seeded). MLE decodes the forward model; MMI reranks its
N-best with the backward model; AMI fine-tunes both (with the noise model) for --ami-steps batches and decodes
the fine-tuned forward model; "MLE+" continues MLE for as many forward batches as AMI's, so AMI's extra
training alone cannot explain a difference. Every arm decodes through the family's ``generate`` (beam --beam;
MMI reranks that beam's N-best), as ``text.evaluate`` does. The evaluator is a backward model trained on the
same train split from another seed.

Mechanism check first (does the forward model's adversarial step raise what it optimises?): the arm "RL"
starts from the same MLE forward model and takes as many forward batches as AMI's, every one with the
adversarial term (REINFORCE on r = log Q(S|T̃)) against the *frozen* pretrained backward model, no noise
update. For every arm, ``reward`` is the mean log Q_pre(S|T̃) over --reward-samples sampled outputs per test
source under that frozen pretrained backward model: the quantity AMI's forward step climbs. If RL raises it
over MLE+, the mechanism works here, and AMI's result can be judged.

    python -m benchmarks.ami [--seeds 3] [--pairs 16000] [--epochs 5] [--ami-steps 320] [--noise-scale 0.1] [--jobs 4]
"""
from __future__ import annotations

import argparse
import os
import random
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402

from benchmarks._common import Tested, interval_text, mean_std, write_claims, write_results  # noqa: E402
from repflow.families.text.ami import (  # noqa: E402
    AMIConfig, forward_adversarial_loss, make_batches, mle_loss, swap, train_ami, train_mle)
from repflow.families.text.decoding import sample_decode  # noqa: E402
from repflow.families.text.generation import TEXT_METHODS, generate as generate_texts  # noqa: E402
from repflow.families.text.metrics import (  # noqa: E402
    bleu, distinct_n, generic_rate, mean_backward_log_likelihood)
from repflow.families.text.models import LatentNoise, build_seq2seq, pad_batch, sequence_log_prob  # noqa: E402
from repflow.families.text.pairs import choose_by_group, split_by_group, wordnet_pairs  # noqa: E402
from repflow.families.text.tokenizer import TextTokenizer, train_tokenizer  # noqa: E402
from repflow.families.text.wordnet import read_wordnet  # noqa: E402

from repflow.verdict import Claim, positive_control  # noqa: E402

ARMS = ("mle", "mle+", "mmi", "rl", "ami")
EVALUATOR_SEED = 1000

PAPER = TEXT_METHODS["ami"].paper
# declared before the run: (method, reference, metric) → the claim; MLE+ has as many forward batches as AMI
CLAIMS = {
    ("ami", "mle+", "generic_rate"): Claim(
        "text.ami_less_generic", "text", PAPER, "AMI's outputs are less generic than MLE's trained for as many "
        "forward batches.", "generic-output rate", "lower", 0.02, "share", ("ami",)),
    ("ami", "mle+", "bleu"): Claim(
        "text.ami_bleu_vs_mle", "text", PAPER, "AMI outperforms MLE (as many forward batches) in BLEU.",
        "BLEU", "higher", 0.5, "BLEU", ("ami",)),
    ("ami", "mmi", "bleu"): Claim(
        "text.ami_bleu_vs_mmi", "text", PAPER, "AMI outperforms MMI reranking in BLEU.", "BLEU", "higher", 0.5,
        "BLEU", ("ami",)),
}


def judged(payload: dict) -> list[Tested]:
    """The declared claims from a run's payload (``per_seed`` rows and ``args``, as ami.json stores them); the
    positive control: the adversarial forward step alone (RL) raises its reward over MLE+."""
    by = {(r["arm"], r["seed"]): r for r in payload["per_seed"]}
    seeds = sorted({r["seed"] for r in payload["per_seed"]})
    a = payload["args"]
    mechanism = positive_control([by["rl", s]["reward"] - by["mle+", s]["reward"] for s in seeds],
                                 name="mechanism: RL − MLE+ sampled reward log Q(S|T)")
    scale = {"data": f"WordNet definitions, {a['pairs']} pairs, {a['test_sources']} test sources",
             "model": f"GRU seq2seq, embed {a['embed']}, hidden {a['hidden']}",
             "steps": f"MLE {a['epochs']} epochs + AMI {a['ami_steps']} batches", "device": "cpu"}
    return [Tested(claim, [by[m, s][k] - by[r, s][k] for s in seeds], (mechanism,), scale,
                   {m: [by[m, s][k] for s in seeds], r: [by[r, s][k] for s in seeds]})
            for (m, r, k), claim in CLAIMS.items()]


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
    return {"tokenizer": tokenizer.tokenizer.to_str(),
            "train": [(encode(p.source)[:a["max_len"]], encode(p.target)[:a["max_len"]]) for p in splits["train"]],
            "test_sources": sources, "test_refs": [refs[s] for s in sources],
            "test_ids": [encode(s)[:a["max_len"]] for s in sources],
            "counts": {"pairs": len(chosen), "train": len(splits["train"]), "test_pairs": len(splits["test"]),
                       "test_sources": len(sources), "vocab": tokenizer.vocab_size}}


def model(vocab: int, a: dict, seed: int):
    torch.manual_seed(seed)
    return build_seq2seq("gru_attention", vocab, embed=a["embed"], hidden=a["hidden"], dropout=0.1)


def generate(arm: str, forward, backward, data: dict, a: dict) -> tuple[list[list[int]], float]:
    """Token ids of each test source's best output, and generated tokens (<eos> included) per CPU second of this
    process (one thread; CPU time rather than wall time, since other processes share the cores)."""
    out = generate_texts("mmi" if arm == "mmi" else "mle", forward, tokenizer_of(data), data["test_sources"],
                         backward=backward, beam=a["beam"], mmi_lambda=a["mmi_lambda"], max_len=a["max_len"])
    return [o[0] for o in out.ids], out.tokens_per_s


@torch.no_grad()
def sampled_reward(forward, frozen_backward, data: dict, a: dict, seed: int) -> float:
    """Mean log Q_pre(S|T̃) (nats per source) of --reward-samples outputs sampled from ``forward`` per test
    source, under the frozen pretrained backward model: what AMI's forward step maximises."""
    generator = torch.Generator().manual_seed(seed)
    source = pad_batch(data["test_ids"])
    k = a["reward_samples"]
    samples = sample_decode(forward, source.repeat_interleave(k, 0), max_len=a["max_len"], generator=generator)
    return sequence_log_prob(frozen_backward, samples, source.repeat_interleave(k, 0)).mean().item()


def train_rl_only(forward, frozen_backward, train: list, steps: int, config: AMIConfig, a: dict, seed: int) -> list:
    """The mechanism arm: ``steps`` forward batches of MLE + the adversarial term (as AMI's adversarial forward
    batches), the backward model frozen and the noise model untrained. Returns the batch rewards."""
    torch.manual_seed(seed + 200)
    noise = LatentNoise(a["hidden"])
    generator = torch.Generator().manual_seed(seed + 300)
    optimizer = torch.optim.Adam(forward.parameters(), lr=config.lr)
    rewards, batches = [], []
    forward.train()
    for _ in range(steps):
        if not batches:
            batches = list(make_batches(train, a["ami_batch"], generator, a["max_len"]))
        source, target = batches.pop(0)
        adv, info = forward_adversarial_loss(forward, frozen_backward, noise, source, config, generator)
        loss = mle_loss(forward, source, target) + config.adversarial_weight * adv
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(forward.parameters(), config.max_grad_norm)
        optimizer.step()
        rewards.append(info["reward"].mean().item())
    forward.eval()
    return rewards


def score(arm: str, outputs: list[list[int]], speed: float, evaluator, data: dict, tokenizer: TextTokenizer) -> dict:
    """The metrics of one arm's outputs (the first 8 decoded outputs kept as samples)."""
    texts = [tokenizer.decode(o) for o in outputs]
    return {"arm": arm, "bleu": bleu(texts, data["test_refs"]), "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2), "generic_rate": generic_rate(texts),
            "log_q": mean_backward_log_likelihood(evaluator, data["test_ids"], outputs),
            "tokens_per_s": speed, "mean_length": sum(len(t.split()) for t in texts) / len(texts),
            "samples": texts[:8]}


def tokenizer_of(data: dict) -> TextTokenizer:
    from tokenizers import Tokenizer

    return TextTokenizer(Tokenizer.from_str(data["tokenizer"]))


def train_evaluator(data: dict, a: dict) -> dict:
    """The backward evaluator: trained like the backward models, on the same train split, from its own seed."""
    torch.set_num_threads(a["threads"])
    evaluator = model(tokenizer_of(data).vocab_size, a, EVALUATOR_SEED)
    train_mle(evaluator, swap(data["train"]), epochs=a["epochs"], lr=a["lr"], seed=EVALUATOR_SEED)
    return evaluator.state_dict()


def run_seed(seed: int, data: dict, a: dict) -> dict:
    """Every arm of one seed: {arm: (output token ids per test source, tokens/s, training CPU s, sampled reward
    under the frozen pretrained backward model)} and the AMI and RL reward traces."""
    torch.set_num_threads(a["threads"])
    vocab, train = tokenizer_of(data).vocab_size, data["train"]
    t0 = time.process_time()
    forward = model(vocab, a, seed)
    train_mle(forward, train, epochs=a["epochs"], lr=a["lr"], seed=seed)
    backward = model(vocab, a, seed + 100)
    train_mle(backward, swap(train), epochs=a["epochs"], lr=a["lr"], seed=seed + 100)
    pretrain_s = time.process_time() - t0
    frozen_backward = model(vocab, a, seed + 100)
    frozen_backward.load_state_dict(backward.state_dict())
    frozen_backward.eval()

    def finish(arm: str, train_s: float) -> None:
        arms[arm] = (*generate(arm, forward, backward, data, a), train_s,
                     sampled_reward(forward, frozen_backward, data, a, seed + 500))

    arms = {}
    for arm in ("mle", "mmi"):
        finish(arm, pretrain_s)
    config = AMIConfig(max_len=a["max_len"], lr=a["ami_lr"], adversarial_weight=a["adv_weight"], samples=a["k"],
                       noise_scale=a["noise_scale"])
    cycle = 2 * config.gm_iter_count + config.noise_batches
    forward_batches = a["ami_steps"] // cycle * config.gm_iter_count + min(a["ami_steps"] % cycle, config.gm_iter_count)
    state = {k: v.clone() for k, v in forward.state_dict().items()}
    t0 = time.process_time()
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 7)).tolist()
    train_mle(forward, [train[i] for i in order[:forward_batches * a["ami_batch"]]], epochs=1,
              batch_size=a["ami_batch"], lr=a["ami_lr"], seed=seed + 7)
    finish("mle+", pretrain_s + time.process_time() - t0)
    forward.load_state_dict(state)
    t0 = time.process_time()
    rl_rewards = train_rl_only(forward, frozen_backward, train, forward_batches, config, a, seed)
    finish("rl", pretrain_s + time.process_time() - t0)
    forward.load_state_dict(state)
    torch.manual_seed(seed + 200)
    noise = LatentNoise(a["hidden"])
    t0 = time.process_time()
    history = train_ami(forward, backward, noise, train, steps=a["ami_steps"], batch_size=a["ami_batch"],
                        config=config, seed=seed + 300)
    finish("ami", pretrain_s + time.process_time() - t0)
    rewards = [h["reward"] for h in history if "reward" in h]
    norms = [h["noise_norm"] for h in history if "noise_norm" in h]
    fifth = max(1, len(rewards) // 5)
    trace = {"ami_reward_first_fifth": sum(rewards[:fifth]) / fifth, "ami_reward_last_fifth":
             sum(rewards[-fifth:]) / fifth, "rl_reward_first_fifth": sum(rl_rewards[:len(rl_rewards) // 5]) /
             max(1, len(rl_rewards) // 5), "rl_reward_last_fifth": sum(rl_rewards[-(len(rl_rewards) // 5):]) /
             max(1, len(rl_rewards) // 5), "noise_norm_first": norms[:4], "noise_norm_last": norms[-4:],
             "forward_batches": forward_batches}
    print(f"[seed {seed}] done: {trace}", flush=True)
    return {"arms": arms, "trace": trace}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=16000)
    ap.add_argument("--max-words", type=int, default=10)
    ap.add_argument("--max-len", type=int, default=24)
    ap.add_argument("--vocab", type=int, default=2000)
    ap.add_argument("--test-sources", type=int, default=400)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ami-steps", type=int, default=320)
    ap.add_argument("--ami-lr", type=float, default=2e-4)
    ap.add_argument("--adv-weight", type=float, default=1.0)
    ap.add_argument("--ami-batch", type=int, default=64)
    ap.add_argument("--k", type=int, default=5, help="AMI samples per source (the official default 5)")
    ap.add_argument("--noise-scale", type=float, default=0.1, help="λ in h + λε (official 1.0; see AMIConfig)")
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--reward-samples", type=int, default=4, help="sampled outputs per test source for 'reward'")
    ap.add_argument("--mmi-lambda", type=float, default=0.5)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    a = {k: v for k, v in vars(args).items()}
    data = prepare(a)
    print(data["counts"], flush=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        evaluator_job = pool.submit(train_evaluator, data, a)
        seed_jobs = {seed: pool.submit(run_seed, seed, data, a) for seed in range(args.seeds)}
        tokenizer = tokenizer_of(data)
        evaluator = model(tokenizer.vocab_size, a, EVALUATOR_SEED)
        evaluator.load_state_dict(evaluator_job.result())
        evaluator.eval()
        results, traces = [], {}
        for seed, job in seed_jobs.items():
            out = job.result()
            traces[seed] = out["trace"]
            for arm, (outputs, speed, train_s, reward) in out["arms"].items():
                row = score(arm, outputs, speed, evaluator, data, tokenizer) | {"train_cpu_s": train_s, "seed": seed,
                                                                                "reward": reward}
                print(f"[seed {seed} {arm}] BLEU {row['bleu']:.2f} d1 {row['distinct_1']:.3f} d2 "
                      f"{row['distinct_2']:.3f} generic {row['generic_rate']:.3f} logQ {row['log_q']:.2f} "
                      f"tok/s {row['tokens_per_s']:.0f} len {row['mean_length']:.1f} reward {reward:.2f}", flush=True)
                results.append(row)
    by = {(r["arm"], r["seed"]): r for r in results}
    seeds = list(range(args.seeds))
    keys = ("bleu", "distinct_1", "distinct_2", "generic_rate", "log_q", "reward", "tokens_per_s", "mean_length",
            "train_cpu_s")
    rows = []
    for arm in ARMS:
        row = {"arm": arm}
        for key in keys:
            m, sd = mean_std([by[arm, s][key] for s in seeds])
            row[key] = f"{m:.3f} ± {sd:.3f}" if key not in ("tokens_per_s", "train_cpu_s") else f"{m:.0f} ± {sd:.0f}"
        rows.append(row)
    notes = [f"Protocol: WordNet 3.0 (Debian wordnet-base) definitions of at most {args.max_words} words, "
             f"{data['counts']['pairs']} pairs from randomly chosen words, split 90/10 by word (data seed 0), "
             f"{data['counts']['test_sources']} held-out sources scored, each against all its definitions "
             f"(multi-reference BLEU); BPE vocabulary {data['counts']['vocab']}; GRU seq2seq with attention, "
             f"embed {args.embed}, hidden {args.hidden}; MLE {args.epochs} epochs, Adam {args.lr}, batch 64; "
             f"AMI {args.ami_steps} batches of {args.ami_batch} (Adam {args.ami_lr}, K={args.k}, λ={args.noise_scale}, "
             f"official schedule 8/8/4), MLE+ the same number of forward batches of plain MLE; RL as many "
             f"forward batches, each MLE + the adversarial term, against the frozen pretrained backward model "
             f"(reward = mean log Q_pre(S|T̃) of "
             f"{args.reward_samples} samples per test source under it); beam {args.beam} for "
             f"every arm, MMI λ={args.mmi_lambda}; generic rate = share of outputs among the 10 most frequent "
             f"(repeated) outputs; log Q in nats per source under an evaluator trained from another seed; "
             f"seeds {seeds}; one torch thread per process."]
    for arm in ("rl", "ami"):
        d = [by[arm, s]["reward"] - by["mle+", s]["reward"] for s in seeds]
        notes.append(f"Mechanism: {arm} − mle+ sampled reward log Q_pre(S|T̃): {mean_std(d)[0]:+.3f} ± "
                     f"{mean_std(d)[1]:.3f} nats ({interval_text(d)}; the "
                     "adversarial forward step wants higher)")
    for key, better in (("generic_rate", "lower"), ("distinct_2", "higher"), ("log_q", "higher"), ("bleu", "same")):
        for arm, base in (("ami", "mle"), ("ami", "mle+"), ("ami", "mmi"), ("rl", "mle+")):
            d = [by[arm, s][key] - by[base, s][key] for s in seeds]
            notes.append(f"{arm.upper()} − {base} {key}: {mean_std(d)[0]:+.4f} ± {mean_std(d)[1]:.4f} "
                         f"({interval_text(d)}; the claim wants {better})")
    for arm in ARMS:
        notes.append(f"{arm} samples (seed 0): " + " | ".join(f"{s!r}" for s in by[arm, 0]["samples"][:5]))
    notes.append(f"Test sources shown: {data['test_sources'][:5]}")
    notes.append(f"Wall time {time.time() - started:.0f} s, {args.jobs} processes × {args.threads} torch thread(s).")
    notes += write_claims(judged({"per_seed": results, "args": vars(args)}), "ami")
    write_results("ami", "AMI vs MLE vs MMI reranking on WordNet definition generation (CPU scale)", rows, notes,
                  extra={"per_seed": results, "ami_traces": traces, "counts": data["counts"], "args": vars(args)})


if __name__ == "__main__":
    main()
