"""Issue 13's four method comparisons at GPU scale, in one call of under ten minutes.

The CPU benchmarks (``rcs``, ``svd_transfer``, ``glad``, ``genrep``) run the fair protocols at CPU size;
this script reruns the same comparisons at a larger scale: all 60 000 Fashion-MNIST training images,
a ResNet-18 encoder where the method trains one, more epochs. The GPU machine has torch and numpy but no
Ray, Prefect, MLflow or pydantic, so it calls repflow's pure algorithms directly (modules and tensors in,
numbers out) and never the stages.

    python -m benchmarks.gpu_reproduce [--only rcs,svd,glad,genrep] [--minutes 9] [--data DIR] [--out DIR]
    python -m benchmarks.gpu_reproduce --smoke      # seconds on a CPU: every section on tiny sizes

Each section writes ``<section>_gpu.md`` / ``.json`` as soon as it finishes, so a run cut short keeps
what it finished. Sections share the time budget (``--minutes``): a training loop that would overrun its
section's share stops at an epoch boundary and the results say so ("time-capped"). One seed per arm at
this scale (the CPU benchmarks carry the seed spread); every arm of a comparison starts from the same
state (same warmed-up encoder, same generator samples, same initial sets).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from repflow.families.image.acl import ACL  # noqa: E402
from repflow.attacks import PGD, accuracy, attack_success_rate, make_attack, rank1_ablation_accuracy  # noqa: E402
from repflow.families.image.contrastive import train_contrastive  # noqa: E402
from repflow.families.image.coreset import (candidate_batches, candidate_gradients, divergence_drops,  # noqa: E402
                                            select_coreset_random,
                             select_coreset_rcs, spearman, validation_gradient)
from repflow.families.image.distill import (DISTILL_NET, EVAL_ARCHITECTURES, FeatureParam, LatentParam, PixelParam,  # noqa: E402
                                            distill,
                             evaluate_distilled, summarize)
from repflow.families.image.generative import genrep_latents, generate_images, train_cvae  # noqa: E402
from repflow.manifest import atomic_write_text  # noqa: E402
from repflow.families.image.models import ConditionalGenerator, ProjectionHead, build_encoder  # noqa: E402
from repflow.families.image.models.generator import ConditionalEncoder  # noqa: E402
from repflow.families.image.probes import embed  # noqa: E402
from repflow.probe import fit_linear_probe  # noqa: E402
from repflow.report import markdown_table  # noqa: E402
from repflow.families.image.sources import read_fashion_mnist  # noqa: E402
from repflow.families.image.zoo import ZOO_SPECS, train_zoo_member  # noqa: E402

SECTIONS = ("svd", "glad", "genrep", "rcs")
SHARE = {"svd": 0.15, "glad": 0.25, "genrep": 0.25, "rcs": 0.35}
"""Fraction of the time budget each section may use (what a section leaves unused goes to the next)."""
AUG = {"crop_scale_min": 0.2, "flip": True, "brightness": 0.4, "contrast": 0.4, "noise_std": 0.0}
EPS = 8 / 255
SVD_SURROGATES = {"convnet": "block2", "convnet_bn_gap": "block2", "resnet8": "stage2"}
SVD_TARGETS = ["convnet_seed1", "mlp", "wide_cnn_bn", "resnet8", "convnet_pgd"]
"""The CPU benchmark's surrogates (zoo member → split stage) and targets (benchmarks/svd_transfer.py)."""


class Clock:
    """Wall-clock budget: ``section(name)`` opens a section's deadline, ``left()`` seconds remain in it."""

    def __init__(self, minutes: float):
        self.end = time.perf_counter() + 60 * minutes
        self.deadline = self.end

    def section(self, name: str, remaining_sections: list[str]) -> None:
        now = time.perf_counter()
        share = SHARE[name] / sum(SHARE[s] for s in remaining_sections)
        self.deadline = now + share * (self.end - now)

    def left(self) -> float:
        return self.deadline - time.perf_counter()


class Setup:
    """Everything the sections share: data on the device, sizes, the clock, the output folder."""

    def __init__(self, args: argparse.Namespace):
        self.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.smoke, self.out, self.clock = args.smoke, Path(args.out), Clock(args.minutes)
        src = read_fashion_mnist(Path(args.data))
        n_train = 600 if args.smoke else len(src.images)
        n_test = 200 if args.smoke else len(src.test_images)
        self.x = torch.from_numpy(src.images[:n_train].copy()).unsqueeze(1).contiguous()
        self.y = torch.from_numpy(src.labels[:n_train]).long()
        self.x_test = torch.from_numpy(src.test_images[:n_test].copy()).unsqueeze(1).contiguous()
        self.y_test = torch.from_numpy(src.test_labels[:n_test]).long()
        self.k = 10
        self.generator: ConditionalGenerator | None = None
        self.generator_note = ""

    def size(self, full: int, smoke: int) -> int:
        return smoke if self.smoke else full

    def write(self, name: str, title: str, rows: list[dict], notes: list[str], extra: dict | None = None) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        machine = {"device": torch.cuda.get_device_name(0) if self.device.type == "cuda" else "cpu",
                   "torch": torch.__version__, "smoke": self.smoke}
        atomic_write_text(self.out / f"{name}_gpu.json",
                          json.dumps({"rows": rows, "notes": notes, "machine": machine, **(extra or {})}, indent=1))
        md = [f"# {title} (GPU scale)", "", f"Machine: {machine}", "", markdown_table(rows, floatfmt="{:.4f}"), ""]
        atomic_write_text(self.out / f"{name}_gpu.md", "\n".join(md + [f"- {n}" for n in notes]) + "\n")
        print("\n".join(md + notes), flush=True)


def timed(device: torch.device, fn):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def probe_accuracy(s: Setup, encoder: torch.nn.Module, seed: int, *, pgd_images: int = 0) -> dict:
    """SLF: a linear probe on frozen features of the training images, then clean test accuracy and,
    with ``pgd_images``, PGD-20 (ε = 8/255) accuracy of encoder + probe on that many test images."""
    encoder.eval()
    feats = embed(encoder, s.x, device=s.device, batch_size=1024)
    probe = fit_linear_probe(feats, s.y, s.k, epochs=s.size(30, 5), lr=1e-2, batch_size=512, seed=seed)
    model = torch.nn.Sequential(encoder, probe.to(s.device)).eval()
    xt = s.x_test.float().div(255)
    out = {"clean": accuracy(model, xt, s.y_test, device=s.device, batch_size=1024)}
    if pgd_images:
        attack = PGD(model, eps=EPS, alpha=2.5 * EPS / 20, steps=20, seed=seed)
        x_att, y_att = xt[:pgd_images].to(s.device), s.y_test[:pgd_images].to(s.device)
        x_adv = torch.cat([attack(x_att[i:i + 500], y_att[i:i + 500]) for i in range(0, len(x_att), 500)])
        out["pgd20"] = accuracy(model, x_adv, y_att, device=s.device, batch_size=1024)
    return out


# ------------------------------------------------------------------------------------------ RCS (ACL)

def section_rcs(s: Setup) -> None:
    """ACL on a dual-BN ResNet-18: full data vs an RCS coreset vs a random one of the same size, all from
    one warmed-up state, with the official schedule's shape (warm-up on all images, then re-selection
    every ``every`` epochs); plus the mechanism check: does RCS's predicted gain rank candidates by the
    actual drop in representational divergence after one head step on them?"""
    seed, fraction = 0, 0.2
    width, max_epochs, warmup, every = s.size(64, 8), s.size(20, 3), s.size(2, 1), s.size(2, 1)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(s.x), generator=g)
    n_val = max(int(0.01 * len(s.x)), 32)  # U: a random 1 % of the training set, as in the official code
    val, pool = s.x[order[:n_val]], s.x[order[n_val:]]
    adv = {"eps": EPS, "alpha": 2 / 255, "steps": 5}
    rd = {"eps": EPS, "alpha": 10 / 255 / 3, "steps": 3}
    batch = s.size(512, 64)

    torch.manual_seed(seed)
    enc = build_encoder({"name": "resnet18", "in_channels": 1, "width": width, "dual_bn": True})
    head = ProjectionHead(enc.out_dim, 128, dual_bn=True)

    def train_epochs(start: int, stop: int, opt_state, indices_for, subset: bool = False
                     ) -> tuple[dict | None, float, float]:
        """Epochs start..stop−1 of ACL on ``pool``, one call per epoch so each epoch's images come from
        ``indices_for(epoch)``; returns the optimiser state, training seconds and selection seconds."""
        train_s = select_s = 0.0
        holder = {"opt": opt_state}
        for epoch in range(start, stop):
            idx, secs = indices_for(epoch)
            select_s += secs
            _, secs = timed(s.device, lambda: train_contrastive(
                enc, head, pool, epochs=epoch + 1, start_epoch=epoch, batch_size=batch, lr=1e-3,
                weight_decay=1e-6, temperature=0.5, augment=AUG, device=s.device, seed=seed,
                adversary=ACL(epochs=stop, **adv), epoch_indices=lambda _e: idx, optimizer_state=holder["opt"],
                use_every_image=subset,
                on_epoch=lambda _e, _st, opt: holder.update(opt=copy.deepcopy(opt.state_dict()))))
            train_s += secs
        return holder["opt"], train_s, select_s

    everything = torch.arange(len(pool))
    state, warm_s, _ = train_epochs(0, warmup, None, lambda e: (everything, 0.0))
    start_point = (copy.deepcopy(enc.state_dict()), copy.deepcopy(head.state_dict()), state)
    budget = round(fraction * len(pool))

    def rcs_select(epoch: int):
        enc.eval()
        head.eval()
        core, secs = timed(s.device, lambda: select_coreset_rcs(
            enc, head, pool, val, budget=budget, batch_size=batch, augment=AUG, temperature=0.5,
            adversarial=adv, rd=rd, head_lr=0.01, seed=seed * 1000 + epoch, device=s.device))
        return core.indices, secs

    def random_select(epoch: int):
        return select_coreset_random(len(pool), budget, seed * 1000 + epoch).indices, 0.0

    def schedule(select):
        cache: dict[str, torch.Tensor] = {}

        def indices_for(epoch: int):
            if (epoch - warmup) % every == 0:
                cache["idx"], secs = select(epoch)
                return cache["idx"], secs
            return cache["idx"], 0.0
        return indices_for

    mech, mech_s = timed(s.device, lambda: mechanism_check(s, enc, head, pool, val, adv, rd, batch, seed))
    # Plan the epochs from the measured warm-up epoch (t): full costs t per epoch, each coreset arm
    # `fraction`·t, an RCS selection about 1.5·t (ACL attack on every candidate + greedy rounds).
    t = warm_s / warmup
    per_epoch = t * (1 + 2 * fraction) + 1.5 * t / every
    epochs = warmup + max(1, min(max_epochs - warmup, int(0.8 * s.clock.left() / per_epoch)))
    rows, notes = [], []
    for arm, indices_for in (("full", lambda e: (everything, 0.0)), (f"rcs @ {fraction}", schedule(rcs_select)),
                             (f"random @ {fraction}", schedule(random_select))):
        enc.load_state_dict(start_point[0])
        head.load_state_dict(start_point[1])
        _, train_s, select_s = train_epochs(warmup, epochs, copy.deepcopy(start_point[2]), indices_for,
                                            subset=arm != "full")
        acc = probe_accuracy(s, enc, seed, pgd_images=s.size(2000, 100))
        rows.append({"arm": arm, "slf_clean": acc["clean"], "slf_pgd20": acc["pgd20"], "warm-up s": warm_s,
                     "selection s": select_s, "training s": train_s, "total s": warm_s + select_s + train_s})
        print(rows[-1], flush=True)
    for row in rows:
        row["speed-up"] = rows[0]["total s"] / row["total s"]
    notes += [f"ACL (ε 8/255, PGD-5 α 2/255, NT-Xent τ 0.5, Adam lr 1e-3, batch {batch}) on a dual-BN ResNet-18 "
              f"(width {width}); {len(pool)} training images, U = {n_val} (1 %); {epochs} epochs (planned from the "
              f"measured warm-up epoch, {t:.1f} s, to fit the time budget), warm-up {warmup} on all images, coreset "
              f"re-selected every {every} epochs; seed {seed}",
              "every arm continues from the same warmed-up encoder, head and optimiser state; RCS and random train "
              "the same number of steps (same coreset size); speed-up = full total / arm total (warm-up + "
              "selection + training), the paper's accounting",
              "evaluation: SLF probe on all training features, clean accuracy on the test split and PGD-20 "
              "(ε 8/255, α 2.5ε/20) on the first 2000 test images; ALF is not run at this scale (time)",
              f"mechanism check ({mech['candidates']} candidates on the warmed-up model, {mech_s:.0f} s): Spearman "
              f"ρ(predicted gain, actual L_RD drop after one head step) on U {mech['rho_U']:+.3f} (permutation p "
              f"{mech['p_U']:.3f}), on held-out test images {mech['rho_held_out']:+.3f} (p {mech['p_held_out']:.3f})"]
    s.write("rcs", "RCS vs random coreset vs full data (ACL, ResNet-18)", rows, notes, {"mechanism": mech})


def mechanism_check(s: Setup, enc, head, pool, val, adv, rd, batch, seed) -> dict:
    """Score candidate minibatches with RCS's predicted gain ⟨∇_head L_ACL(b), ∇_head L_RD(U)⟩ and
    Spearman-correlate it with the actual drop of L_RD on U and on held-out test images after one head
    step (lr 0.01, the greedy step) on each candidate (:func:`repflow.families.image.coreset.divergence_drops`)."""
    enc.eval()
    head.eval()
    batches = candidate_batches(len(pool), batch, seed)[:s.size(48, 6)]
    grads = candidate_gradients(enc, head, pool, batches, list(range(len(batches))), augment=AUG, temperature=0.5,
                                adversarial=adv, seed=seed, device=s.device)
    g_val, _ = validation_gradient(enc, head, val.to(s.device).float().div(255), rd=rd, seed=seed)
    predicted = (grads @ g_val).double()
    drops = divergence_drops(enc, head, grads, {"U": val, "held_out": s.x_test[:len(val)]}, rd=rd, step=0.01,
                             seed=seed, device=s.device)
    out: dict = {"candidates": len(batches), "predicted": predicted.tolist()}
    for name, d in drops.items():
        out[f"rho_{name}"], out[f"p_{name}"] = spearman(predicted, d, seed=seed)
        out[f"drop_{name}"] = d.tolist()
    return out


# ------------------------------------------------------------------------------------------ SVD-SSA

def section_svd(s: Setup) -> None:
    """Transfer success of MI-FGSM / DI / SSA with and without SVD logit fusion (β = 0.5) from each
    surrogate in the zoo to every target, at ε 0.1 and 0.2, plus the premise check per surrogate (accuracy
    when the split feature is replaced by its rank-1 part vs by the residual)."""
    seed, epochs, n_att = 0, s.size(8, 1), s.size(2000, 100)

    def train(name: str, member_seed: int):
        return train_zoo_member(ZOO_SPECS[name], s.x, s.y, seed=member_seed, epochs=epochs, batch_size=256,
                                device=s.device)

    targets = {name: train(name, seed) for name in SVD_TARGETS}
    xt = s.x_test.float().div(255)
    x_att, y_att = xt[:n_att].to(s.device), s.y_test[:n_att].to(s.device)
    rows, premise = [], {}
    for name, layer in SVD_SURROGATES.items():
        model = train(name, seed + 1)  # another seed than the targets: no surrogate is one of them
        premise[name] = rank1_ablation_accuracy(model, layer, xt.to(s.device), s.y_test.to(s.device))
        for eps in (0.1, 0.2):
            for attack in ("mifgsm", "di", "ssa"):
                cells = {}
                for fusion in (None, {"layer": layer, "beta": 0.5}):
                    adv = make_attack(attack, model, svd=fusion, eps=eps, alpha=eps / 10, steps=10, seed=seed)
                    x_adv = torch.cat([adv(x_att[i:i + 500], y_att[i:i + 500]) for i in range(0, n_att, 500)])
                    cells[fusion is not None] = [attack_success_rate(t, x_adv, x_att, y_att, device=s.device)[0]
                                                 for t in targets.values()]
                base, fused = (sum(cells[k]) / len(targets) for k in (False, True))
                rows.append({"surrogate": f"{name} @ {layer}", "eps": eps, "attack": attack,
                             "black-box (no SVD)": base, "black-box (SVD β=0.5)": fused, "Δ": fused - base})
        print(rows[-1], flush=True)
    notes = [f"zoo: targets {list(targets)} (seed {seed}) and surrogates {list(SVD_SURROGATES)} (seed {seed + 1}) "
             f"trained {epochs} epochs on {len(s.x)} images; attacks on the first {n_att} test images: 10 steps, "
             "α = ε/10, μ = 1; black-box = mean attack success over the targets",
             "premise (surrogate accuracy on the test split with the split feature replaced): "
             + "; ".join(f"{n}: full {p['full feature']:.3f}, rank-1 {p['rank-1 part']:.3f}, residual "
                         f"{p['residual']:.3f}" for n, p in premise.items())]
    s.write("svd_transfer", "SVD logit fusion: black-box transfer success", rows, notes, {"premise": premise})


# ------------------------------------------------------------------------------------------ generator

def shared_generator(s: Setup) -> ConditionalGenerator:
    """The conditional VAE decoder GLaD and GenRep share, trained once on all training images."""
    if s.generator is None:
        torch.manual_seed(0)
        gen = ConditionalGenerator(s.k, (1, 28, 28))
        enc = ConditionalEncoder(s.k, (1, 28, 28))
        hist, secs = timed(s.device, lambda: train_cvae(gen, enc, s.x, s.y, epochs=s.size(20, 1), batch_size=256,
                                                        lr=1e-3, beta=1.0, device=s.device, seed=0))
        s.generator = gen.eval()
        s.generator_note = (f"generator: conditional VAE decoder, {len(hist)} epochs on {len(s.x)} images "
                            f"({secs:.0f} s), final loss {hist[-1]['loss']:.1f}")
    return s.generator


# ------------------------------------------------------------------------------------------ GLaD

def section_glad(s: Setup) -> None:
    """DM distillation at ipc 10 with pixels (from noise: the official default; from the generator's
    samples: the latent arms' start), latents z and generator features F_l: final cross-architecture
    accuracy and gain over each arm's own initial set, checked at half and all iterations."""
    gen = shared_generator(s)
    ipc, seed = s.size(10, 2), 0
    iterations = s.size(1000, 4)
    pixels = s.x.float().div(255)
    norm = {"mean": [pixels.mean().item()], "std": [pixels.std().item()]}  # the networks see normalised images
    eval_kw = {"seeds": (0, 1) if not s.smoke else (0,), "epochs": s.size(300, 2), "device": s.device,
               "archs": {name: {**cfg, **norm} for name, cfg in EVAL_ARCHITECTURES.items()}}

    def arms():
        yield "pixel (generator-sample start)", PixelParam.from_generator(gen, ipc, seed)
        yield "latent (z)", LatentParam(gen, ipc, seed)
        yield "feature (F_1, w)", FeatureParam(gen, ipc, 1, seed)
        yield "pixel (noise start, official default)", PixelParam.from_noise((1, 28, 28), s.k, ipc, seed, **norm)

    def cross_and_same(param) -> dict:
        return summarize(evaluate_distilled(*param.snapshot(), s.x_test, s.y_test, **eval_kw))

    rows = []
    for name, param in arms():
        if s.clock.left() < 0:
            rows.append({"arm": name, "note": "skipped: time budget spent"})
            continue
        param = param.to(s.device)
        start, checkpoints = cross_and_same(param), {}

        def at_half(row: dict, param=param, checkpoints=checkpoints) -> None:
            if row["iteration"] == iterations // 2:
                checkpoints["half"] = cross_and_same(param)

        distill(param, s.x, s.y, loss="dm", iterations=iterations, seed=seed, on_step=at_half,
                net_config={**DISTILL_NET, **norm})
        final, half = cross_and_same(param), checkpoints["half"]
        rows.append({"arm": name, "start cross": start["cross_arch"], "half cross": half["cross_arch"],
                     "final cross": final["cross_arch"], "gain cross": final["cross_arch"] - start["cross_arch"],
                     "start same": start["same_arch"], "final same": final["same_arch"],
                     "gain same": final["same_arch"] - start["same_arch"]})
        print(rows[-1], flush=True)
    done = [r for r in rows if "final cross" in r]
    rank_half = [r["arm"] for r in sorted(done, key=lambda r: -r["half cross"])]
    rank_final = [r["arm"] for r in sorted(done, key=lambda r: -r["final cross"])]
    notes = [s.generator_note,
             f"DM, ipc {ipc}, {iterations} iterations (default learning rates), a fresh ConvNet per iteration; "
             f"evaluation: {sorted(EVAL_ARCHITECTURES)} × seeds {list(eval_kw['seeds'])}, {eval_kw['epochs']} epochs; "
             "cross = mean over the non-ConvNet architectures",
             f"ranking by cross-arch accuracy at {iterations // 2} iterations: {rank_half}; at {iterations}: "
             f"{rank_final}; stable: {rank_half == rank_final}"]
    s.write("glad", "GLaD: distillation parameterisations from equal starts", rows, notes)


# ------------------------------------------------------------------------------------------ GenRep

def section_genrep(s: Setup) -> None:
    """SimCLR on a ResNet-18 from generated data: pixel-augmented views of anchors vs GenRep's latent
    neighbours at σ ∈ {0.5, 1, 2, 4, 8}; linear-probe accuracy on the real test split; plus the
    anchor-to-view cosine distance in a judge classifier's feature space against same-class pairs."""
    gen = shared_generator(s)
    seed, width, epochs, n, k = 0, s.size(64, 8), s.size(6, 1), s.size(30_000, 200), 4
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % s.k
    judge = train_zoo_member(ZOO_SPECS["convnet"], s.x, s.y, seed=seed, epochs=s.size(5, 1), device=s.device)
    feat_net = judge.split(judge.layer_names[-2])[0].eval()

    def judge_features(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(feat_net(images.to(s.device).float().div(255)).flatten(1), dim=1).cpu()

    rows = []
    arms = [("pixel views of generated anchors", 0.0)] + [(f"GenRep σ={sig:g}", sig) for sig in (0.5, 1, 2, 4, 8)]
    for name, sigma in arms:
        if s.clock.left() < 0:
            rows.append({"arm": name, "note": "skipped: time budget spent"})
            continue
        z = genrep_latents(n, k, gen.z_dim, sigma=sigma, g=g)
        images = generate_images(gen, z.flatten(0, 1), labels.repeat_interleave(k + 1), device=s.device)
        images = images.view(n, k + 1, *images.shape[1:])
        anchors, partners = images[:, 0].contiguous(), images[:, 1:].contiguous()
        fa, fv = judge_features(anchors[:2000]), judge_features(partners[:2000, 0])
        torch.manual_seed(seed)
        enc = build_encoder({"name": "resnet18", "in_channels": 1, "width": width})
        head = ProjectionHead(enc.out_dim, 128)
        _, secs = timed(s.device, lambda: train_contrastive(
            enc, head, anchors, epochs=epochs, batch_size=s.size(512, 64), lr=1e-3, weight_decay=1e-6,
            temperature=0.5, augment=AUG, device=s.device, seed=seed, partners=None if sigma == 0 else partners))
        acc = probe_accuracy(s, enc, seed)["clean"]
        rows.append({"arm": name, "probe acc (real test)": acc,
                     "anchor-view cos distance": float(1 - (fa * fv).sum(1).mean()), "train s": secs})
        print(rows[-1], flush=True)
    fr = judge_features(s.x[:2000])
    yr = s.y[:2000]
    same = (fr @ fr.T)[yr[:, None] == yr[None, :]]
    diff = (fr @ fr.T)[yr[:, None] != yr[None, :]]
    notes = [s.generator_note,
             f"{n} generated anchors × {k} latent neighbours; ResNet-18 width {width}, {epochs} epochs, NT-Xent τ 0.5, "
             "batch 512, crop/flip/jitter on both views; probe on real training features, real test split",
             f"judge feature space (convnet, penultimate stage, unit-normalised): mean cosine distance of real "
             f"same-class pairs {float(1 - same.mean()):.3f}, different-class pairs {float(1 - diff.mean()):.3f}"]
    s.write("genrep", "GenRep: σ sweep at ResNet-18 scale", rows, notes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    ap.add_argument("--minutes", type=float, default=9.0, help="wall-clock budget shared by the sections")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST idx files")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0 = torch's default); the GPU does the work, 1 avoids oversubscription")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks every section runs, in seconds")
    args = ap.parse_args()
    chosen = [x for x in args.only.split(",") if x]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        ap.error(f"--only: unknown sections {unknown}; allowed: {list(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    s = Setup(args)
    order = [x for x in SECTIONS if x in chosen]
    for i, name in enumerate(order):
        s.clock.section(name, order[i:])
        t0 = time.perf_counter()
        globals()[f"section_{name}"](s)
        print(f"section {name}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
