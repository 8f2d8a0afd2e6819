"""The attack-throughput race shared by ``attack_speed`` (CPU, Fashion-MNIST) and ``gpu_perf`` (any device):
the arms, interleaved timing and the rows with their verdicts. Imports torch and repflow.attacks only;
the peer libraries (torchattacks, torchattack) join when importable, so a torch-only machine still runs
repflow's own rows (the SVD-fusion and SSA ratios).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch

from repflow.attacks import MIFGSM, PGD, SSA, SVDLogitFusion, accuracy


@dataclass
class Arm:
    """One contestant: ``attack`` name (the row group), ``implementation``, the callable (x, y) -> x_adv, and
    the ``heat`` it runs in: arms of one heat alternate round by round, and the first arm of a heat is the
    baseline its paired ratios divide by."""

    attack: str
    implementation: str
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    eps: float
    heat: str = ""

    def __post_init__(self) -> None:
        self.heat = self.heat or self.attack


def _peer(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


def attack_arms(model: torch.nn.Module, device: torch.device, *, eps: float, steps: int, spectrum: int,
                fusion_layer: str, compiled: bool = True) -> list[Arm]:
    """PGD-``steps`` and MI-FGSM-``steps`` (repflow eager, repflow with ``compile=True``, the peers), PGD with
    SVD logit fusion (power iteration, β = 0.5) and SSA with ``spectrum`` copies (repflow, torchattack)."""
    pgd_alpha, mi_alpha = 2.5 * eps / steps, eps / steps
    pgd, mi, ssa = f"PGD-{steps}", f"MI-FGSM-{steps}", f"SSA-{steps} (N = {spectrum})"
    arms = [Arm(pgd, "repflow", PGD(model, eps=eps, alpha=pgd_alpha, steps=steps), eps),
            Arm(mi, "repflow", MIFGSM(model, eps=eps, alpha=mi_alpha, steps=steps), eps)]
    if compiled:
        arms += [Arm(pgd, "repflow, compile=True", PGD(model, eps=eps, alpha=pgd_alpha, steps=steps, compile=True),
                     eps),
                 Arm(mi, "repflow, compile=True", MIFGSM(model, eps=eps, alpha=mi_alpha, steps=steps, compile=True),
                     eps)]
    torchattacks, torchattack = _peer("torchattacks"), _peer("torchattack")
    if torchattacks is not None:
        tag = f"torchattacks {torchattacks.__version__}"
        arms += [Arm(pgd, tag, torchattacks.PGD(model, eps=eps, alpha=pgd_alpha, steps=steps, random_start=True), eps),
                 Arm(mi, tag, torchattacks.MIFGSM(model, eps=eps, alpha=mi_alpha, steps=steps, decay=1.0), eps)]
    if torchattack is not None:
        tag = f"torchattack {torchattack.__version__}"
        arms += [Arm(pgd, tag, torchattack.PGD(model, device=device, eps=eps, alpha=pgd_alpha, steps=steps,
                                               random_start=True), eps),
                 Arm(mi, tag, torchattack.MIFGSM(model, device=device, eps=eps, alpha=mi_alpha, steps=steps,
                                                 decay=1.0), eps)]
    fusion = SVDLogitFusion(model, fusion_layer, beta=0.5, method="power")
    arms.append(Arm(pgd, f"repflow + SVD fusion ({fusion_layer}, power, β = 0.5)",
                    PGD(fusion, eps=eps, alpha=pgd_alpha, steps=steps), eps))
    arms.append(Arm(mi, SSA_REFERENCE, MIFGSM(model, eps=eps, alpha=mi_alpha, steps=steps), eps, heat=ssa))
    arms.append(Arm(ssa, "repflow", SSA(model, eps=eps, alpha=mi_alpha, steps=steps, num_spectrum=spectrum), eps))
    if torchattack is not None:
        arms.append(Arm(ssa, f"torchattack {torchattack.__version__} (noise in the input's shape)",
                        _any_shape_ssa(torchattack)(model, device=device, eps=eps, alpha=mi_alpha, steps=steps,
                                                    decay=1.0, num_spectrum=spectrum), eps))
    return arms


SSA_REFERENCE = "repflow (SSA heat's baseline)"


def _any_shape_ssa(torchattack):
    """torchattack 1.7.2's SSA draws its Gaussian noise as (N, 3, 224, 224) whatever the input; this subclass
    changes only that draw to the input's shape, keeping their DCT, mask and update."""

    class AnyShapeSSA(torchattack.SSA):
        def transform(self, x: torch.Tensor) -> torch.Tensor:
            spectrum = self._dct_2d(x + torch.randn_like(x) * self.eps)
            return self._idct_2d(spectrum * (torch.rand_like(x) * 2 * self.rho + 1 - self.rho))

    return AnyShapeSSA


def race(arms: list[Arm], model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int,
         progress: Callable[[str], None] = print, clock: str = "wall") -> tuple[list[dict], dict[str, list[float]]]:
    """Warm every arm up once (compiles, allocator, lazy init; robust accuracy and ε-ball from that run),
    then heat by heat ``repeats`` rounds, each running every arm of the heat once in a rotated order.

    Rows carry median images/s and "× baseline time": the median over rounds of this arm's seconds over
    the heat baseline's seconds in the same round. On a shared machine whose load swings by several
    times within minutes, that paired ratio is the number to read; the medians of each arm alone are
    shown for scale.

    ``clock="cpu"`` (a CPU run with one torch thread) times each call by the process's CPU seconds
    instead of the wall clock: on a machine shared with many busy processes, a one-thread call's wall
    time is mostly its waits for a core, which swing from call to call, while its CPU seconds are the
    work it did (cache misses included); on an idle machine the two agree. The rows then also carry
    the wall-clock median for scale."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock {clock!r} unknown; allowed: wall, cpu")
    device = x.device

    def timed(arm: Arm) -> tuple[float, float, torch.Tensor]:
        """(wall seconds, process CPU seconds, x_adv) of one call."""
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        x_adv = arm.run(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0, x_adv.detach()

    checks: dict[int, dict] = {}
    for i, arm in enumerate(arms):
        seconds, _, x_adv = timed(arm)  # wall clock: compile=True's compile runs in worker processes too
        inside = bool((x_adv - x).abs().max() <= arm.eps * (1 + 1e-5) and x_adv.min() >= 0 and x_adv.max() <= 1)
        checks[i] = {"robust acc": accuracy(model, x_adv, y, device=device), "inside ε-ball": inside,
                     "first call s": seconds}
        progress(f"warm-up {arm.attack} | {arm.implementation}: {seconds:.2f} s")
    seconds: dict[int, list[float]] = {i: [] for i in range(len(arms))}
    walls: dict[int, list[float]] = {i: [] for i in range(len(arms))}
    baseline: dict[int, int] = {}
    for heat in dict.fromkeys(arm.heat for arm in arms):
        order = [i for i, arm in enumerate(arms) if arm.heat == heat]
        baseline.update({i: order[0] for i in order})
        for r in range(repeats):
            for i in order[r % len(order):] + order[:r % len(order)]:
                wall, cpu, _ = timed(arms[i])
                seconds[i].append(cpu if clock == "cpu" else wall)
                walls[i].append(wall)
            progress(f"{heat}: round {r + 1}/{repeats} done")
    rows = []
    for i, arm in enumerate(arms):
        times = seconds[i]
        ratios = [t / b for t, b in zip(times, seconds[baseline[i]])]
        rows.append({"heat": arm.heat, "attack": arm.attack, "implementation": arm.implementation,
                     "× baseline time": statistics.median(ratios),
                     "× baseline (range over rounds)": f"{min(ratios):.2f}–{max(ratios):.2f}",
                     "images/s (median)": len(x) / statistics.median(times),
                     "images/s (best)": len(x) / min(times), "images/s (worst)": len(x) / max(times),
                     **({"images/s (wall clock, median)": len(x) / statistics.median(walls[i])}
                        if clock == "cpu" else {}),
                     **checks[i]})
    return rows, {f"{a.attack} | {a.implementation}": seconds[i] for i, a in enumerate(arms)}


def verdicts(rows: list[dict], seconds: dict[str, list[float]], *, steps: int,
             spectrum: int) -> tuple[list[str], dict[str, dict]]:
    """The issue's targets read off the rows' paired ratios (see :func:`race`): each as a sentence and as
    {measured, target, met}. "Throughput ×" is the inverse ratio of paired seconds. A repflow arm against a
    peer library is judged by the median over rounds of (peer's seconds / repflow's seconds) in the same
    round, reported with its range over rounds (``seconds``: :func:`race`'s per-round seconds per arm)."""
    speed = {(r["attack"], r["implementation"]): 1 / r["× baseline time"] for r in rows}
    pgd, mi, ssa = f"PGD-{steps}", f"MI-FGSM-{steps}", f"SSA-{steps} (N = {spectrum})"
    lines, targets = [], {}
    for attack in (pgd, mi):
        peers = [impl for (a, impl) in speed if a == attack and impl.startswith(("torchattacks", "torchattack "))]
        for impl in ("repflow", "repflow, compile=True"):
            if (attack, impl) not in speed:
                continue
            for peer in peers:
                ratios = [theirs / ours for theirs, ours in zip(seconds[f"{attack} | {peer}"],
                                                                 seconds[f"{attack} | {impl}"])]
                ratio = statistics.median(ratios)
                key = f"{attack}: {impl} vs {peer}"
                targets[key] = {"measured": ratio, "range over rounds": [min(ratios), max(ratios)],
                                "rounds": len(ratios), "target": ">= 1.3", "met": ratio >= 1.3}
                verdict = "met" if ratio >= 1.3 else "not met"
                lines.append(f"{key}: {ratio:.2f}× the throughput, range over {len(ratios)} rounds "
                             f"{min(ratios):.2f}–{max(ratios):.2f} (target ≥ 1.3×: {verdict})")
    fused = [impl for (a, impl) in speed if a == pgd and "SVD fusion" in impl]
    for impl in fused:
        cost = speed[(pgd, "repflow")] / speed[(pgd, impl)]
        targets[f"{pgd}: SVD fusion cost"] = {"measured": cost, "target": "<= 2", "met": cost <= 2}
        lines.append(f"{pgd} with SVD fusion costs {cost:.2f}× PGD without it (target ≤ 2×: "
                     f"{'met' if cost <= 2 else 'not met'})")
    if (ssa, "repflow") in speed:
        cost = speed[(mi, SSA_REFERENCE)] / speed[(ssa, "repflow")]
        bound = 1.5 * spectrum
        targets[f"{ssa}: cost vs MI-FGSM"] = {"measured": cost, "target": f"<= {bound}", "met": cost <= bound}
        lines.append(f"{ssa} costs {cost:.2f}× MI-FGSM-{steps} (target ≤ 1.5·N = {bound:g}×: "
                     f"{'met' if cost <= bound else 'not met'})")
        for (a, impl), theirs in speed.items():
            if a == ssa and impl != "repflow":
                ratio = speed[(ssa, "repflow")] / theirs
                targets[f"{ssa}: repflow vs {impl}"] = {"measured": ratio, "target": "> 1", "met": ratio > 1}
                lines.append(f"{ssa}: repflow {ratio:.2f}× the throughput of {impl} (target > 1×: "
                             f"{'met' if ratio > 1 else 'not met'})")
    return lines, targets
