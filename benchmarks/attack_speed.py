"""Attack throughput: images/s of repflow's PGD-10 and MI-FGSM-10 against torchattacks and torchattack, on
the same model (the transfer zoo's ConvNet surrogate, width 32, briefly trained on Fashion-MNIST), the
same batch of test images and the same ε, α and steps, timed side by side in one process.

torchattacks is a benchmark-only dependency: ``.venv/bin/pip install --no-deps torchattacks==3.5.1``.

    python -m benchmarks.attack_speed [--device cpu|cuda] [--batch 256] [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402

from benchmarks._common import write_results  # noqa: E402
from repflow.attacks import MIFGSM, PGD, accuracy  # noqa: E402
from repflow.sources import read_source  # noqa: E402
from repflow.zoo import ZOO_SPECS, train_zoo_member  # noqa: E402


def contestants(model, device: torch.device, eps: float, steps: int) -> dict[tuple[str, str], object]:
    """(attack, implementation) -> callable(x, y) -> x_adv, all with the same ε, α and steps."""
    import torchattack
    import torchattacks

    pgd_alpha, mi_alpha = 2.5 * eps / steps, eps / steps
    ta_versions = f"torchattack {torchattack.__version__}"
    return {
        (f"PGD-{steps}", "repflow"): PGD(model, eps=eps, alpha=pgd_alpha, steps=steps, random_start=True),
        (f"PGD-{steps}", f"torchattacks {torchattacks.__version__}"):
            torchattacks.PGD(model, eps=eps, alpha=pgd_alpha, steps=steps, random_start=True),
        (f"PGD-{steps}", ta_versions):
            torchattack.PGD(model, device=device, eps=eps, alpha=pgd_alpha, steps=steps, random_start=True),
        (f"MI-FGSM-{steps}", "repflow"): MIFGSM(model, eps=eps, alpha=mi_alpha, steps=steps, decay=1.0),
        (f"MI-FGSM-{steps}", f"torchattacks {torchattacks.__version__}"):
            torchattacks.MIFGSM(model, eps=eps, alpha=mi_alpha, steps=steps, decay=1.0),
        (f"MI-FGSM-{steps}", ta_versions):
            torchattack.MIFGSM(model, device=device, eps=eps, alpha=mi_alpha, steps=steps, decay=1.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds; each runs every contestant once")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (0 = torch's default; 1 avoids OpenMP contention on a shared CPU)")
    args = ap.parse_args()
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
    attacks = contestants(model, device, args.eps, args.steps)

    def timed(attack) -> tuple[float, torch.Tensor]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        x_adv = attack(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, x_adv.detach()

    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in attacks}
    robust: dict[tuple[str, str], float] = {}
    keys = list(attacks)
    for key in keys:  # warm-up: allocator, kernels, lazy init
        robust[key] = accuracy(model, timed(attacks[key])[1], y, device=device)
    for r in range(args.repeats):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:  # rotate so no one always runs first
            seconds[key].append(timed(attacks[key])[0])

    rows, verdicts = [], []
    for attack_name in dict.fromkeys(a for a, _ in keys):
        ours = args.batch / statistics.median(seconds[(attack_name, "repflow")])
        for (a, impl), times in seconds.items():
            if a != attack_name:
                continue
            speed = args.batch / statistics.median(times)
            rows.append({"attack": a, "implementation": impl, "images/s (median)": speed,
                         "images/s (best)": args.batch / min(times), "images/s (worst)": args.batch / max(times),
                         "repflow ÷ this": ours / speed, "robust acc": robust[(a, impl)]})
        others = [r["images/s (median)"] for r in rows
                  if r["attack"] == attack_name and r["implementation"] != "repflow"]
        verdicts.append(f"{attack_name}: repflow {ours:.1f} images/s vs {', '.join(f'{o:.1f}' for o in others)}; "
                        f"at least as fast as both: {all(ours >= o for o in others)}")
    notes = [
        f"device {args.device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}), torch threads "
        f"{torch.get_num_threads()}, batch {args.batch} Fashion-MNIST test images 28×28, ε = {args.eps}, "
        f"{args.steps} steps; PGD α = 2.5ε/steps from a random start, MI-FGSM α = ε/steps, μ = 1",
        "model: zoo surrogate ConvNet (3 blocks, width 32, instance norm), 1 epoch on 3000 images; "
        f"clean acc on the batch {accuracy(model, x, y, device=device):.3f}",
        f"{args.repeats} timed rounds after one warm-up each, order rotated per round; median reported",
        *verdicts,
        "robust acc differ across implementations only through random starts (PGD) and float rounding",
    ]
    write_results("attack_speed", "Attack throughput: repflow vs torchattacks vs torchattack", rows, notes,
                  extra={"seconds": {f"{a} | {i}": t for (a, i), t in seconds.items()}, "args": vars(args)})


if __name__ == "__main__":
    main()
