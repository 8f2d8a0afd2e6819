"""Attack throughput: repflow's PGD-10 and MI-FGSM-10 (eager and ``compile=True``) against torchattacks and
torchattack; PGD-10 with SVD logit fusion against PGD-10; SSA against MI-FGSM and torchattack's SSA. Same model
(the transfer zoo's ConvNet, width 32, briefly trained on Fashion-MNIST), the same batch of test images and
the same ε, α and steps, timed side by side in one process (arms interleaved, medians). The race itself is
``benchmarks/_attack_arms.py``, shared with the GPU script ``benchmarks/gpu_perf.py``.

torchattacks is a benchmark-only dependency: ``.venv/bin/pip install --no-deps torchattacks==3.5.1``.

    python -m benchmarks.attack_speed [--device cpu|cuda] [--batch 256] [--repeats 9] [--threads 1] [--spectrum 5]
                                      [--heats pgd,mifgsm,ssa] [--name attack_speed]

The load average (``os.getloadavg``) before and after the race is written beside the numbers: the machine
may be shared, and the paired per-round ratios are what stays fair under load.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402

from benchmarks._common import write_results  # noqa: E402
from benchmarks._attack_arms import attack_arms, race, verdicts  # noqa: E402
from repflow.attacks import accuracy  # noqa: E402
from repflow.families.image.sources import read_source  # noqa: E402
from repflow.families.image.zoo import ZOO_SPECS, train_zoo_member  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--spectrum", type=int, default=5, help="SSA's spectrum copies per step (N)")
    ap.add_argument("--repeats", type=int, default=9, help="timed rounds; each runs every contestant once")
    ap.add_argument("--heats", default="pgd,mifgsm,ssa",
                    help="comma-separated heats to race: pgd, mifgsm, ssa (SSA is most of the run's time)")
    ap.add_argument("--name", default="attack_speed", help="results file name under benchmarks/results/")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0 = torch's default; 1 avoids OpenMP contention on a shared CPU)")
    args = ap.parse_args()
    heats = {"pgd": f"PGD-{args.steps}", "mifgsm": f"MI-FGSM-{args.steps}",
             "ssa": f"SSA-{args.steps} (N = {args.spectrum})"}
    chosen = args.heats.split(",")
    if not chosen or any(h not in heats for h in chosen):
        raise SystemExit(f"--heats {args.heats!r}: allowed a comma-separated subset of {sorted(heats)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    src = read_source("fashion-mnist")
    x_train = torch.from_numpy(src.images[:3000].copy()).unsqueeze(1)
    y_train = torch.from_numpy(src.labels[:3000].astype("int64"))
    model = train_zoo_member(ZOO_SPECS["convnet"], x_train, y_train, seed=0, epochs=1, batch_size=64,
                             num_classes=10, device=device)
    x = (torch.from_numpy(src.test_images[:args.batch].copy()).unsqueeze(1).float() / 255).to(device)
    y = torch.from_numpy(src.test_labels[:args.batch].astype("int64")).to(device)
    arms = attack_arms(model, device, eps=args.eps, steps=args.steps, spectrum=args.spectrum, fusion_layer="block2")
    arms = [arm for arm in arms if arm.heat in {heats[h] for h in chosen}]
    load_before = os.getloadavg()
    clock = "cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    rows, seconds = race(arms, model, x, y, args.repeats, clock=clock)
    load_after = os.getloadavg()
    lines, targets = verdicts(rows, seconds, steps=args.steps, spectrum=args.spectrum)
    notes = [
        f"device {args.device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), torch threads "
        f"{torch.get_num_threads()}, batch {args.batch} Fashion-MNIST test images 28×28, ε = {args.eps}, "
        f"{args.steps} steps; PGD α = 2.5ε/steps from a random start, MI-FGSM and SSA α = ε/steps, μ = 1; "
        f"SSA N = {args.spectrum} spectrum copies per step, ρ = 0.5, σ = ε",
        "model: zoo ConvNet (3 blocks, width 32, instance norm), 1 epoch on 3000 images; "
        f"clean acc on the batch {accuracy(model, x, y, device=device):.3f}",
        "load average (1, 5, 15 min) before the race " + ", ".join(f"{v:.2f}" for v in load_before)
        + ", after " + ", ".join(f"{v:.2f}" for v in load_after) + f" on {os.cpu_count()} CPUs",
        ("seconds are the process's CPU seconds per call (one torch thread; on a shared machine a call's wall time "
         "is mostly its waits for a core), images/s per CPU second; the wall-clock median is shown for scale"
         if clock == "cpu" else "seconds are wall-clock seconds"),
        f"one warm-up per arm (it includes compile=True's compile: 'first call s'), then heat by heat (PGD, "
        f"MI-FGSM, SSA with an MI-FGSM baseline) {args.repeats} rounds, order rotated per round; '× baseline "
        "time' is the median over rounds of the arm's seconds / the heat's first arm's seconds in that round "
        "(paired, so the machine's load swings cancel), with its range over rounds beside it; the verdicts "
        "below use the same pairing (peer's seconds / repflow's seconds, round by round)",
        *lines,
        "robust acc differ across implementations only through random starts (PGD), SSA's random copies and "
        "float rounding; every arm stays inside the ε-ball and [0, 1] ('inside ε-ball')",
    ]
    write_results(args.name, "Attack throughput: repflow vs torchattacks vs torchattack", rows, notes,
                  extra={"seconds": seconds, "clock": clock, "targets": targets, "args": vars(args),
                         "load average": {"before": load_before, "after": load_after}})


if __name__ == "__main__":
    main()
