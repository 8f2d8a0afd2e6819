"""Adversarial positional negatives (arXiv 2303.08561) on tasks the mechanism can touch: random encoder vs the
SimCLR baseline vs ``advneg``, with the frequency axis mean-pooled and flattened, over ``--seeds`` seeds.

Two data sets, each with a position-sensitive task and a position-insensitive one beside it:

- **bands** (the positive control, synthetic log-mel): one sound event per clip, a narrow band centred on
  one of 4 mel rows 14 apart (> the smallest negative shift, 12), jittered ±2 rows; it pulses 1–4 times.
  ``band`` (where in frequency) is set by absolute position alone; ``pulses`` (how many) by time alone. A
  position-sensitive encoder must beat a position-invariant one on ``band``; advneg, whose negatives are
  frequency shifts, must raise it there if the code is right.
- **espeak** (the claim's task): espeak-ng words (20 words, random accent, voice variant, rate and pitch) as a
  96-row log-mel over BYOL-A's 60–7800 Hz; each clip's 64-row patch is the window starting at row 0, 16 or 32,
  drawn per clip. ``position`` = which window: the speech's spectrum sits 16 rows (> 12) lower per class, set
  by absolute frequency position and nothing else the speaker controls. ``word`` is the position-insensitive
  control task. This replaces the old ``pitch_band`` (a band of espeak's pitch *setting*: neighbouring bands
  1–2 mel bins apart at F0, a male "high" below a female "low").

Real recordings: none fits on this machine. Debian's asterisk prompts and tuxpaint sounds (research/data.md)
are not installed, and the only audio in the installed wheels is scipy's and CPython's format-test files.

Per arm the probes are linear (100 epochs, Adam 0.01, standardised embeddings); ``ideal`` is the same probe
on the raw log-mel patch (every row kept: the position-keeping reference of the floor check). Every arm of a
seed starts from the same initial weights, batches and view draws (advneg draws its negatives from its own
generator). Training uses the family's default augmentations and negatives (``audio.train.augment`` /
``audio.train.negatives``), which after issue 32 bound a positive view's frequency move to 4 mel bins,
fill shifts with the clip's mirrored edge and reorder only sounding blocks.

    python -m benchmarks.audio_advneg [--seeds 5] [--epochs 6] [--clips-per-word 24] [--bands-clips 384] [--rows F]
    python -m benchmarks.audio_advneg --rows F --render-rows   # judge a run cut short from its rows file
    python -m benchmarks.audio_advneg --from-json   # re-render notes, plot and claims from results/*.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from benchmarks._common import (  # noqa: E402
    RESULTS, Tested, append_rows, interval_text, mean_std, read_rows, write_claims, write_results)
from repflow.families.audio.advneg import position_sensitivity, positional_candidates  # noqa: E402
from repflow.families.audio.data import load_audio_split  # noqa: E402
from repflow.families.audio.evaluation import fit_probes  # noqa: E402
from repflow.families.audio.models import FREQ_POOLING, AudioNTT, projection_head  # noqa: E402
from repflow.families.audio.params import AudioAugmentParams, AudioNegativeParams  # noqa: E402
from repflow.families.audio.pictures import logmel_rows  # noqa: E402
from repflow.families.audio.ssl import AUDIO_METHODS, embed_clips, train_audio_ssl  # noqa: E402
from repflow.report import bar_plot  # noqa: E402
from repflow.verdict import Claim, paired_interval, positive_control, separation_check  # noqa: E402

PAPER = AUDIO_METHODS["advneg"].paper
SMALLEST = 0.02
"""Declared smallest effect for every claim here: 2 points of probe accuracy (about one seed's spread)."""
N_MELS = 64
BAND_CENTRES = (11, 25, 39, 53)
"""bands: class centres in mel rows, 14 apart (wider than the smallest negative shift of 12)."""
WINDOW_OFFSETS = (0, 16, 32)
"""espeak: the 64-row window of a 96-row log-mel each position class shows, 16 rows apart."""
WIDE_MELS = N_MELS + WINDOW_OFFSETS[-1]
TASKS = {"bands": ("band", "pulses"), "espeak": ("position", "word")}
"""Per data set: (position-sensitive task, position-insensitive task)."""
ARMS = ("random", "baseline", "advneg")
DIAGNOSTIC = {"advneg_k2_no_reorder": {"k": 2, "reorders": 0}}
"""``--diagnostic`` arms (mean pooling only, no claim): advneg with other negative settings, named by what they
change. k = 2 without reorders: every clip's two hardest of the four shifts and time reversal, so at least one
shift negative per clip even when reversal (to which mean + max pooling over time is nearly blind) is hardest."""


def _claim(cid: str, pool: str, task: str, statement: str) -> Claim:
    return Claim(cid, "audio", PAPER, statement, f"espeak {task} probe accuracy ({pool} over frequency)", "higher",
                 SMALLEST, "accuracy", ("advneg",))


CLAIMS = {
    ("mean", "position"): _claim("audio.advneg_position_task", "mean", "position", "Adversarial positional "
                                 "negatives raise probe accuracy on a task set by absolute frequency position (which "
                                 "16-bin window of the spectrum espeak speech sits in) over the same SimCLR baseline, "
                                 "encoder mean-pooled over frequency."),
    ("flatten", "position"): _claim("audio.advneg_position_task_flatten", "flatten", "position", "The same as "
                                    "audio.advneg_position_task with the frequency axis flattened (AudioNTT2020), "
                                    "not pooled."),
    ("mean", "word"): _claim("audio.advneg_control_task", "mean", "word", "Adversarial positional negatives raise "
                             "probe accuracy on a position-insensitive task (which espeak word) over the same SimCLR "
                             "baseline, encoder mean-pooled over frequency."),
    ("flatten", "word"): _claim("audio.advneg_control_task_flatten", "flatten", "word", "The same as "
                                "audio.advneg_control_task with the frequency axis flattened, not pooled."),
}
"""Declared before the run: advneg − baseline on the named espeak probe, paired by seed."""


def _by(rows: list[dict]) -> dict:
    return {(r["data"], r["pool"], r["arm"], r["seed"]): r for r in rows}


def complete_seeds(by: dict, data: str, pool: str) -> list[int]:
    """The seeds whose every arm (and the raw-patch probe) of ``data`` × ``pool`` was run: a run cut short
    (``--from-rows``) is judged on these, and a claim with fewer than 5 is inconclusive by the rule."""
    seeds = sorted({s for (_, _, _, s) in by})
    return [s for s in seeds if all((data, pool, arm, s) in by for arm in ARMS + ("ideal",))]


def judged(payload: dict) -> list[Tested]:
    """The declared claims from a run's payload (``per_seed`` and ``args``, as audio_advneg.json stores them).

    Controls, the same for every claim except its floor check: the positive control (bands, mean pooling:
    advneg − baseline on ``band`` accuracy, interval above 0: the shift negatives must teach position where
    the baseline's pooling hides it), and the floor/ceiling check on the claim's own task and pooling
    (position: the random encoder vs ``ideal``, the probe on the raw patch; word: the random encoder vs the
    trained baseline; best possible 1.0)."""
    by = _by(payload["per_seed"])
    a = payload["args"]

    def acc(data, pool, arm, task):
        return [by[data, pool, arm, s][f"acc_{task}"] for s in complete_seeds(by, data, pool)]

    band_gain = [x - y for x, y in zip(acc("bands", "mean", "advneg", "band"),
                                       acc("bands", "mean", "baseline", "band"))]
    control = positive_control(band_gain, name="positive control: synthetic bands (mean pooling), advneg − baseline "
                                               "band accuracy")
    scale = {"data": f"espeak, {a['clips_per_word']} clips × 20 words, 3 window classes; bands: {a['bands_clips']} "
                     "synthetic clips", "model": f"AudioNTT-style, {a['channels']} channels", "steps": f"{a['epochs']} "
                     f"epochs, batch {a['batch_size']}", "device": "cpu"}
    tested = []
    for (pool, task), claim in CLAIMS.items():
        strong_arm = "ideal" if task == "position" else "baseline"
        floor = separation_check(acc("espeak", pool, "random", task), acc("espeak", pool, strong_arm, task),
                                 SMALLEST, best=1.0, name=f"random encoder vs {strong_arm} on espeak {task} "
                                                          f"({pool} pooling)")
        diffs = [x - y for x, y in zip(acc("espeak", pool, "advneg", task), acc("espeak", pool, "baseline", task))]
        per_seed = {arm: acc("espeak", pool, arm, task) for arm in ("advneg", "baseline", "random", "ideal")}
        tested.append(Tested(claim, diffs, (control, floor), scale, per_seed))
    return tested


def synthetic_bands(n: int, seed: int, frames: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` synthetic normalised log-mel patches (n, 1, 64, frames) and their labels ``band`` (0–3, the centre
    row :data:`BAND_CENTRES`) and ``pulses`` (0–3: 1–4 pulses). Background: −1 ± 0.3 noise; the event: a
    Gaussian band (σ 1.5–3 rows, centre jittered ±2 rows) of level 2–4 switched on in pulses of 3–6 frames at
    evenly spaced times with a random start."""
    g = torch.Generator().manual_seed(seed)
    band, pulses = torch.randint(0, 4, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)
    centre = torch.tensor(BAND_CENTRES, dtype=torch.float)[band] + (torch.rand(n, generator=g) * 2 - 1) * 2
    width = 1.5 + torch.rand(n, generator=g) * 1.5
    profile = torch.exp(-0.5 * ((torch.arange(N_MELS).float().view(1, -1) - centre.view(-1, 1)) / width.view(-1, 1))
                        ** 2)
    envelope = torch.zeros(n, frames)
    for i in range(n):
        k = int(pulses[i]) + 1
        length = int(torch.randint(3, 7, (1,), generator=g))
        period = frames // k
        start = int(torch.randint(0, max(period - length, 1), (1,), generator=g))
        for p in range(k):
            envelope[i, start + p * period:start + p * period + length] = 1.0
    level = 2 + torch.rand(n, generator=g) * 2
    x = -1 + 0.3 * torch.randn(n, N_MELS, frames, generator=g)
    x = x + level.view(-1, 1, 1) * profile.unsqueeze(2) * envelope.unsqueeze(1)
    return x.unsqueeze(1), {"band": band, "pulses": pulses}


def _espeak_params(args) -> dict:
    return {"seed": 0, "device": "cpu", "audio": {
        "prep": {"clips_per_word": args.clips_per_word, "val_fraction": 0.0},
        "features": {"n_mels": WIDE_MELS, "frames": args.frames}}}


def espeak_windows(folder: Path, args) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """The audio.prep stage on espeak speech (data seed 0) at 96 mel rows; each clip's patch is the 64-row
    window its position class (drawn per clip, seed 0) names. Returns {split: (patches, labels)}."""
    from repflow import tracking
    from repflow.family import parse_params
    from repflow.stage import run_stage

    tracking.configure(folder)
    prep = run_stage("audio.prep", parse_params(_espeak_params(args)), {}, folder / "prep")
    out = {}
    for i, split in enumerate(("train", "test")):
        data = load_audio_split(prep, split, tasks=["word"])
        cls = torch.randint(0, len(WINDOW_OFFSETS), (len(data),), generator=torch.Generator().manual_seed(i))
        rows = torch.tensor(WINDOW_OFFSETS)[cls].view(-1, 1) + torch.arange(N_MELS).view(1, -1)
        patches = torch.take_along_dim(data.logmel, rows.view(len(data), 1, N_MELS, 1), dim=2)
        out[split] = (patches.contiguous(), {"position": cls, "word": data.labels["word"]})
    return out


def bands_data(args) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    n_test = args.bands_clips // 2
    return {"train": synthetic_bands(args.bands_clips, 0, args.frames), "test": synthetic_bands(n_test, 1, args.frames)}


def run_arm(data: str, sets: dict, pool: str, arm: str, seed: int, args) -> dict:
    """Train (unless random / ideal) and evaluate one arm for one seed."""
    (x_tr, y_tr), (x_te, y_te) = sets["train"], sets["test"]
    classes = {t: int(max(y_tr[t].max(), y_te[t].max())) + 1 for t in y_tr}
    t0 = time.process_time()
    row: dict = {"data": data, "pool": pool, "arm": arm, "seed": seed}
    if arm == "ideal":
        f_tr, f_te = x_tr.flatten(1), x_te.flatten(1)
    else:
        torch.manual_seed(seed)
        encoder = AudioNTT(n_mels=N_MELS, channels=args.channels, freq_pool=pool)
        head = projection_head(encoder.out_dim, 128)
        if arm != "random":
            method = "advneg" if arm in DIAGNOSTIC else arm
            negatives = {**AudioNegativeParams().model_dump(), **DIAGNOSTIC.get(arm, {})}
            history = train_audio_ssl(encoder, head, x_tr, method=method, epochs=args.epochs,
                                      batch_size=args.batch_size, lr=1e-3, weight_decay=1e-6, temperature=0.1,
                                      augment=AudioAugmentParams().model_dump(), negatives=negatives, seed=seed)
            row["final_loss"] = history[-1]["loss"]
            if "chosen" in history[-1]:
                row["chosen_last_epoch"] = history[-1]["chosen"]
                row["negative_similarity_last"] = history[-1]["negative_similarity"]
        row["train_cpu_s"] = time.process_time() - t0
        f_tr, f_te = embed_clips(encoder, x_tr), embed_clips(encoder, x_te)
        absolute, relative = position_sensitivity(encoder, x_te, (8, -8, 16, -16))
        row["position_sensitivity"], row["position_sensitivity_relative"] = absolute, relative
    fitted = fit_probes(f_tr, y_tr, f_te, y_te, classes, epochs=100, lr=0.01, batch_size=256, seed=seed)
    row.update({f"acc_{t}": fitted[t].accuracy for t in y_tr})
    row.update({f"majority_{t}": fitted[t].majority for t in y_tr})
    row["cpu_s"] = time.process_time() - t0
    print(f"[{data} {pool} {arm} seed {seed}] " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                                            if isinstance(v, float)), flush=True)
    return row


def views_picture(sets: dict, path: Path) -> None:
    """One clip per position class of each data set, and the espeak clip's positional candidates as advneg
    makes them (shift with mirrored edge, reverse, sounding-block reorder)."""
    rows = []
    for data, task in (("bands", "band"), ("espeak", "position")):
        x, y = sets[data]["test"]
        panels = []
        for c in sorted(set(y[task].tolist())):
            panels.append((f"{task} {c}", x[int((y[task] == c).nonzero()[0, 0])]))
        rows.append((data, panels))
    x, _ = sets["espeak"]["test"]
    cands, names, valid = positional_candidates(x[:1], torch.Generator().manual_seed(0),
                                                shifts=AudioNegativeParams().shifts, reorders=1)
    shown = ("freq+12", "freq-20", "reverse", "reorder")
    rows.append(("espeak negatives", [("anchor", x[0])] + [(n + ("" if valid[0, j] else " (invalid)"), cands[0, j])
                                                           for j, n in enumerate(names) if n in shown]))
    logmel_rows(rows, path, title="position classes and advneg's candidate negatives")


def _rows_table(by: dict) -> list[dict]:
    table = []
    for data, tasks in TASKS.items():
        for pool in FREQ_POOLING:
            seeds = complete_seeds(by, data, pool)
            if not seeds:
                continue
            for metric in [f"acc_{t}" for t in tasks] + ["position_sensitivity_relative"]:
                row = {"data": data, "pool": pool, "metric": metric}
                for arm in ARMS + ("ideal",) + tuple(DIAGNOSTIC):
                    vals = [v for v in (by.get((data, pool, arm, s), {}).get(metric) for s in seeds) if v is not None]
                    row[arm] = f"{mean_std(vals)[0]:.3f} ± {mean_std(vals)[1]:.3f}" if vals else ""
                diffs = [by[data, pool, "advneg", s][metric] - by[data, pool, "baseline", s][metric] for s in seeds]
                row["seeds"] = len(seeds)
                row["advneg − baseline"] = f"{mean_std(diffs)[0]:+.3f}"
                row["95 % interval"] = "[{:+.3f}, {:+.3f}]".format(*paired_interval(diffs)[1:])
                table.append(row)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--clips-per-word", type=int, default=24)
    ap.add_argument("--bands-clips", type=int, default=384)
    ap.add_argument("--frames", type=int, default=64, help="log-mel frames per patch (10 ms each)")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rows", type=Path, default=None, help="append each arm's row to this JSON-lines file and "
                                                            "skip arms already in it (resume)")
    ap.add_argument("--from-json", action="store_true", help="re-render the tables and notes from results/*.json")
    ap.add_argument("--diagnostic", action="store_true", help="also run the DIAGNOSTIC arms (mean pooling, 5 seeds)")
    ap.add_argument("--render-rows", action="store_true", help="judge and write results from the --rows file alone, "
                                                               "running nothing (a run cut short; give its arguments)")
    args = ap.parse_args()
    if args.render_rows and (args.rows is None or not args.rows.is_file()):
        ap.error(f"--render-rows needs --rows naming an existing JSON-lines file, got {args.rows}")
    for key in ("seeds", "epochs", "clips_per_word", "bands_clips", "frames", "channels", "batch_size"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} = {getattr(args, key)}; must be at least 1")
    torch.set_num_threads(1)
    if args.from_json:
        saved = json.loads((RESULTS / "audio_advneg.json").read_text())
        args = argparse.Namespace(**{**saved["args"], "from_json": True, "rows": None, "render_rows": False})
        results, cpu_total, wall = saved["per_seed"], saved["cpu_s"], saved["wall_s"]
    elif args.render_rows:
        results = read_rows(args.rows)
        counted = [r for r in results if not (r["arm"] == "ideal" and r["pool"] == "flatten")]
        cpu_total, wall = sum(r["cpu_s"] for r in counted), None
    else:
        started, cpu0 = time.time(), time.process_time()
        done = read_rows(args.rows)
        have = {(r["data"], r["pool"], r["arm"], r["seed"]) for r in done}
        with tempfile.TemporaryDirectory(prefix="audio-advneg-") as tmp:
            sets = {"bands": bands_data(args), "espeak": espeak_windows(Path(tmp), args)}
        views_picture(sets, RESULTS / "audio_advneg_views.png")
        results = list(done)
        for pool in FREQ_POOLING:  # mean pooling first: the headline claim and the positive control
            for seed, data in ((s, d) for s in range(args.seeds) for d in ("bands", "espeak")):
                if pool == FREQ_POOLING[0] and (data, pool, "ideal", seed) not in have:
                    row = run_arm(data, sets[data], pool, "ideal", seed, args)
                    results += [row, {**row, "pool": "flatten"}]  # the raw patch has no pooling: one probe for both
                    append_rows(args.rows, results[-2:])
                for arm in ARMS + (tuple(DIAGNOSTIC) if args.diagnostic and pool == "mean" else ()):
                    if (data, pool, arm, seed) in have:
                        continue
                    results.append(run_arm(data, sets[data], pool, arm, seed, args))
                    append_rows(args.rows, results[-1:])
        cpu_total = time.process_time() - cpu0 + sum(r["cpu_s"] for r in done)
        wall = time.time() - started
    by = _by(results)
    seeds = sorted({r["seed"] for r in results})
    rows = _rows_table(by)
    payload_args = {k: v for k, v in vars(args).items() if k not in ("from_json", "rows", "render_rows")}
    short = [f"{data}/{pool}: {len(complete_seeds(by, data, pool))} of {args.seeds}" for data in TASKS
             for pool in FREQ_POOLING if len(complete_seeds(by, data, pool)) < args.seeds]
    payload = {"per_seed": results, "args": payload_args}
    tested = judged(payload)

    def paired(data, pool, metric):
        return [by[data, pool, "advneg", s][metric] - by[data, pool, "baseline", s][metric]
                for s in complete_seeds(by, data, pool)]

    def gain(data, pool, metric):
        diffs = paired(data, pool, metric)
        return f"{mean_std(diffs)[0]:+.3f} ({interval_text(diffs)})" if diffs else "not run"

    def versus(arm, data, task):
        pairs = [(by[data, "mean", arm, s][f"acc_{task}"], by[data, "mean", "baseline", s][f"acc_{task}"])
                 for s in seeds if (data, "mean", arm, s) in by and (data, "mean", "baseline", s) in by]
        diffs = [x - y for x, y in pairs]
        return f"{mean_std(diffs)[0]:+.3f} ({interval_text(diffs)})" if len(diffs) > 1 else "not run"

    chosen: dict[str, dict[str, int]] = {}
    blind: dict[str, list[float]] = {}
    for (data, pool, arm, _), r in by.items():
        if arm == "advneg" or arm in DIAGNOSTIC:
            bucket = chosen.setdefault(f"{data}/{pool}" + ("" if arm == "advneg" else f" {arm}"), {})
            blind.setdefault(f"{data}/{pool}" + ("" if arm == "advneg" else f" {arm}"), []).append(
                r["negative_similarity_last"])
            for name, count in r["chosen_last_epoch"].items():
                kind = name.rstrip("+-0123456789")
                bucket[kind] = bucket.get(kind, 0) + count
    counted = [r for r in results if not (r["arm"] == "ideal" and r["pool"] == "flatten")]  # one probe, listed twice
    cpu_by_arm = {arm: sum(r["cpu_s"] for r in counted if r["arm"] == arm)
                  for arm in ARMS + ("ideal",) + tuple(DIAGNOSTIC)}
    notes = [
        f"Protocol: bands = {args.bands_clips} train / {args.bands_clips // 4} test synthetic clips (4 band classes "
        f"centred on rows {list(BAND_CENTRES)}, 1–4 pulses); espeak = {args.clips_per_word} clips × 20 words "
        "(audio.prep, data seed 0, 80 % train / 20 % test, no validation split), 16 kHz, 96-row log-mel 60–7800 Hz "
        "normalised with the "
        f"train split's statistics, cut to the 64-row window at row {list(WINDOW_OFFSETS)} by position class; "
        f"{args.frames} frames (10 ms) per patch. AudioNTT-style encoder ({args.channels} channels, 3 conv blocks, "
        f"512-d), mean over frequency or flattened; SimCLR NT-Xent τ = 0.1, Adam 1e-3, batch {args.batch_size}, "
        f"{args.epochs} epochs; augmentations and negatives at the family defaults "
        f"({AudioAugmentParams().model_dump()}; "
        f"{AudioNegativeParams().model_dump()}); probes 100 epochs Adam 0.01; seeds {seeds}.",
        "Differences from official code and from the issue, named: there is no official code for the paper (its "
        "generator and loss are our formulation of the abstract); the baseline is SimCLR on BYOL-A's augmentations and "
        "encoder, not BYOL (a negative needs a contrastive loss); BYOL-A's crop is bounded to 4 mel bins of frequency "
        f"move (issue 32); {args.channels} conv channels instead of 64, {args.frames} frames instead of 96, "
        f"{args.epochs} epochs on a few hundred clips instead of 100+ epochs on AudioSet (the CPU budget); mixup "
        "partners from the same batch instead of a 2048-clip memory; no real recordings (none fits on this machine, "
        "see the module docstring).",
        "Positive control (bands, mean pooling), advneg − baseline: band accuracy "
        f"{gain('bands', 'mean', 'acc_band')}; pulses accuracy {gain('bands', 'mean', 'acc_pulses')}; relative "
        f"position sensitivity {gain('bands', 'mean', 'position_sensitivity_relative')}. With flattening: band "
        f"{gain('bands', 'flatten', 'acc_band')}; pulses {gain('bands', 'flatten', 'acc_pulses')}.",
        "espeak relative position sensitivity, advneg − baseline: mean pooling "
        f"{gain('espeak', 'mean', 'position_sensitivity_relative')}; flattened "
        f"{gain('espeak', 'flatten', 'position_sensitivity_relative')}.",
        *write_claims(tested, "audio_advneg"),
        *[f"Diagnostic, no claim: {arm} ({DIAGNOSTIC[arm]}) − baseline, mean pooling: " + "; ".join(
            f"{data} {task} {versus(arm, data, task)}" for data, tasks in TASKS.items() for task in tasks)
          + "." for arm in DIAGNOSTIC if any(k[2] == arm for k in by)],
        "What the adversary chose (last epoch, all seeds): " + "; ".join(
            f"{key}: " + ", ".join(f"{k} {v / max(sum(c.values()), 1):.0%}" for k, v in sorted(c.items(),
                                                                                               key=lambda kv: -kv[1]))
            for key, c in sorted(chosen.items())) + ". Mean cosine of the chosen negatives' projections to their "
        "anchors at the last epoch: "
        + ", ".join(f"{key} {statistics.fmean(v):.3f}" for key, v in sorted(blind.items()))
        + " (1 = the encoder cannot tell them from the anchor).",
        f"CPU time {cpu_total:.0f} s in one process with one torch thread ("
        + (f"wall {wall:.0f} s of this invocation on the shared 2-core machine; rows resumed from --rows count their "
           "own CPU seconds" if wall is not None else "the arms' own CPU seconds, data "
           "preparation not counted: judged from the rows file") + "); by arm, all data sets, poolings and seeds: "
        + ", ".join(f"{arm} {s:.0f} s" for arm, s in cpu_by_arm.items()) + ".",
        *([f"Cut short (the deadline): complete seeds per data set / pooling: {'; '.join(short)}. A claim judged on "
           "fewer than 5 seeds is inconclusive by the rule."] if short else []),
        "Reading the architecture: AudioNTT's three conv 3 + max-pool 2 blocks give each unit a receptive field of "
        "22 mel rows, so a band more than ~21 rows from both edges of the 64-row patch (the two middle band classes) "
        "is seen by no unit that also sees the edge's zero padding; after the mean over frequency its absolute row "
        "survives only as the pooling grid's phase (a shift not a multiple of 8 rows). The encoder then averages "
        "frames through a per-frame MLP and mean + max over time, nearly blind to frame order, so time reversal and "
        "block reorders stay about as similar as the anchor (the cosine above). "
        "Flattening keeps the row by construction: even the random flattened encoder is near the raw patch on band "
        "and position.",
        "Pictures: audio_advneg.png (probe accuracy per task, pooling and arm), audio_advneg_views.png (one clip "
        "per position class and an espeak clip's candidate negatives).",
    ]
    groups, series, errors = [], {arm: [] for arm in ARMS + ("ideal",)}, {arm: [] for arm in ARMS + ("ideal",)}
    for data, tasks in TASKS.items():
        for pool in FREQ_POOLING:
            for task in tasks:
                groups.append(f"{data} {task} ({pool})")
                for arm in series:
                    vals = [by[data, pool, arm, s][f"acc_{task}"] for s in complete_seeds(by, data, pool)]
                    mu, sd = mean_std(vals) if vals else (float("nan"), 0.0)
                    series[arm].append(mu)
                    errors[arm].append(sd)
    bar_plot(groups, series, RESULTS / "audio_advneg.png", ylabel="probe accuracy", errors=errors,
             title="random vs baseline vs advneg vs raw patch (mean ± std over seeds)")
    write_results("audio_advneg", "Audio SSL with adversarial positional negatives (arXiv 2303.08561)", rows, notes,
                  extra={"per_seed": json.loads(json.dumps(results)), "cpu_s": cpu_total, "wall_s": wall,
                         "args": payload_args})


if __name__ == "__main__":
    main()
