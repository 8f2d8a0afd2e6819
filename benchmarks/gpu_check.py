"""GPU check of the pure algorithms (needs only torch): each runs on CUDA, gives the same answer as on
the CPU where the maths is deterministic, and is timed on both. For a machine lent with a GPU:

    python -m benchmarks.gpu_check [--out DIR] [--compare cuda|cpu]

Checks: ACL/DynACL training steps (dual BN + contrastive PGD), RCS candidate gradients and greedy
selection, the attack suite (PGD, MI-FGSM, DI, SSA; SVD logit fusion exact vs power iteration) and
GLaD's DM distillation steps in a generator's feature space, and the data-parallel SimCLR step
(``train.workers``: gather with gradients + DDP on a 1-process NCCL group, :func:`data_parallel_step`; it runs
on CPU too, with gloo). Writes ``gpu_check.md`` / ``.json``.

Per family (``benchmarks/_family_checks.py``, one registry entry per family model / method / attack): one
training step and one evaluation on the CPU and on CUDA from identical state and inputs, compared with the
tolerance stated there (TF32 off); a table in the same report, and exit status 1 if any check disagrees.
On a machine without CUDA, ``--compare cpu`` runs only these checks CPU against CPU (must agree exactly: a
self-test of the harness) and writes ``gpu_check_cpu.md`` / ``.json`` instead.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import torch  # noqa: E402

from benchmarks._family_checks import RTOL, ATTACK_RTOL, family_table  # noqa: E402
from repflow.families.image.models import ConditionalGenerator, ProjectionHead, build_classifier, build_encoder  # noqa: E402
from repflow.families.image.acl import ACL  # noqa: E402
from repflow.attacks import accuracy, make_attack, rank1_approximation  # noqa: E402
from repflow.families.image.contrastive import train_contrastive  # noqa: E402
from repflow.families.image.coreset import candidate_batches, candidate_gradients, select_coreset_rcs  # noqa: E402
from repflow.families.image.distill import FeatureParam, distill  # noqa: E402
from repflow.report import markdown_table  # noqa: E402
from repflow.families.image.supervised import train_classifier  # noqa: E402

AUG = {"crop_scale_min": 0.5, "flip": True, "brightness": 0.4, "contrast": 0.4, "noise_std": 0.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-dependent uint8 28×28 images: 10 classes, each a bright square at its own place + noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.3
    for c in range(10):
        r, col = 2 + (c // 5) * 12, 2 + (c % 5) * 5
        x[y == c, :, r:r + 10, col:col + 5] += 0.6
    return (x.clamp(0, 1) * 255).to(torch.uint8), y


def acl_epoch(device: torch.device, images: torch.Tensor) -> tuple[float, float]:
    torch.manual_seed(0)
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 32, "dual_bn": True})
    head = ProjectionHead(enc.out_dim, 64, dual_bn=True)
    adv = ACL(eps=8 / 255, alpha=2 / 255, steps=5, epochs=2, anneal_period=1)
    hist, seconds = timed(lambda: train_contrastive(enc, head, images, epochs=1, batch_size=256, lr=1e-3,
                                                    weight_decay=0.0, temperature=0.5, augment=AUG, device=device,
                                                    seed=0, adversary=adv), device)
    return hist[-1]["loss"], len(images) / seconds


def rcs_selection(device: torch.device, images: torch.Tensor) -> tuple[list[int], float, bool]:
    torch.manual_seed(0)
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 32, "dual_bn": True}).to(device).eval()
    head = ProjectionHead(enc.out_dim, 64, dual_bn=True).to(device).eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    before = [p.detach().clone() for p in head.parameters()]
    core, seconds = timed(lambda: select_coreset_rcs(
        enc, head, images, images[:256], budget=len(images) // 5, batch_size=64, augment=AUG, temperature=0.5,
        adversarial={"eps": 8 / 255, "alpha": 2 / 255, "steps": 3}, rd={"eps": 8 / 255, "alpha": 10 / 255 / 3,
                                                                          "steps": 3},
        head_lr=0.01, seed=0, device=device), device)
    restored = all(torch.equal(a, b) for a, b in zip(before, head.parameters()))
    return core.picked.tolist(), seconds, restored


def candidate_agreement(images: torch.Tensor) -> float:
    """Max relative difference of RCS candidate gradients computed on CPU and on CUDA (same model)."""
    torch.manual_seed(0)
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 16, "dual_bn": True}).eval()
    head = ProjectionHead(enc.out_dim, 32, dual_bn=True).eval()
    batches = candidate_batches(512, 64, 0)
    kw = dict(augment=AUG, temperature=0.5, adversarial=None, seed=0)
    cpu = candidate_gradients(enc, head, images[:512], batches, list(range(8)), **kw)
    gpu = candidate_gradients(enc.cuda(), head.cuda(), images[:512], batches, list(range(8)), device="cuda", **kw)
    return float((cpu - gpu).norm() / cpu.norm())


def attacks(device: torch.device, x: torch.Tensor, y: torch.Tensor, names=("pgd", "mifgsm", "di", "ssa")) -> list[dict]:
    torch.manual_seed(0)
    model = build_classifier({"arch": "convnet", "in_shape": [1, 28, 28], "num_classes": 10, "width": 32})
    train_classifier(model, x, y, epochs=2, lr=2e-3, batch_size=128, seed=0, device=device)
    xf, yd = x[:512].float().div(255).to(device), y[:512].to(device)
    rows = []
    for name in names:
        extra = {"num_spectrum": 10} if name == "ssa" else {}
        for svd in (None, {"layer": "block2", "method": "power"}, {"layer": "block2", "method": "exact"}):
            attack = make_attack(name, model, svd=svd, eps=0.1, steps=10, seed=0, **extra)
            x_adv, seconds = timed(lambda: attack(xf, yd), device)
            inside = bool(((x_adv - xf).abs().max() <= 0.1 + 1e-5) and x_adv.min() >= 0 and x_adv.max() <= 1)
            rows.append({"attack": name, "svd": svd["method"] if svd else "-", "robust_acc": accuracy(model, x_adv, yd,
                                                                                                      device=device),
                         "images/s": len(xf) / seconds, "inside ε-ball": inside})
    return rows


def svd_agreement() -> float:
    f = torch.randn(64, 32, 49, device="cuda")
    exact = rank1_approximation(f, method="exact")
    power = rank1_approximation(f, method="power", iterations=100, generator=torch.Generator().manual_seed(0))
    return float((exact - power).norm() / exact.norm())


def glad_steps(device: torch.device, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    torch.manual_seed(0)
    gen = ConditionalGenerator(10, (1, 28, 28), z_dim=32, w_dim=64, channels=64).eval()
    param = FeatureParam(gen, ipc=10, layer=2, seed=0).to(device)
    hist, seconds = timed(lambda: distill(param, x.to(device), y.to(device), loss="dm", iterations=20, seed=0),
                          device)
    return hist[0]["loss"], hist[-1]["loss"], 20 / seconds


def family_checks(device: str) -> tuple[list[dict], list[str]]:
    """Every registered family check, CPU against ``device`` (exactly, when that is the CPU too): the table's
    rows and the report's markdown section."""
    exact = device == "cpu"
    rows = family_table(device, exact=exact)
    failed = [r["check"] for r in rows if not r["agree"]]
    tolerance = ("rtol 0 (CPU against CPU must agree bitwise)" if exact else
                 f"rtol {RTOL:g} (attacks {ATTACK_RTOL:g}), TF32 off; see benchmarks/_family_checks.py")
    md = [f"## Per family: one training step + one evaluation, CPU vs {device}", "",
          f"Relative L2 differences of the step's loss, the state after the step and the eval outputs; {tolerance}.",
          "", markdown_table(rows, floatfmt="{:.2e}"), "",
          f"{len(rows) - len(failed)}/{len(rows)} agree" + (f"; disagree: {', '.join(failed)}" if failed else "")]
    return rows, md


def cpu_self_check(out: Path) -> bool:
    """``--compare cpu``: the family checks CPU against CPU; writes gpu_check_cpu.md / .json."""
    torch.set_num_threads(1)
    rows, md = family_checks("cpu")
    out.mkdir(parents=True, exist_ok=True)
    report = {"torch": torch.__version__, "compare": "cpu vs cpu", "families": rows}
    (out / "gpu_check_cpu.json").write_text(json.dumps(report, indent=1, default=str))
    text = "\n".join([f"# GPU check harness, CPU against CPU (torch {torch.__version__})", ""] + md) + "\n"
    (out / "gpu_check_cpu.md").write_text(text)
    print(text)
    return all(r["agree"] for r in rows)


def data_parallel_step(device: torch.device, steps: int = 20, batch: int = 256) -> dict:
    """The data-parallel SimCLR step (``train.workers``) on a 1-process group, NCCL on CUDA and gloo on CPU:
    encoder + head under ``DistributedDataParallel`` (synchronised batch norm), projections through the
    gather-with-gradients collective (called directly, so it runs even with one member), against the plain step
    from the same start on the same views: the first step's loss and gradients must agree, and both are timed
    over ``steps`` steps (samples/s)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from repflow.data_parallel import _GatherWithGrad, sync_batch_norm
    from repflow.families.image.augment import random_views
    from repflow.families.image.contrastive import nt_xent_loss

    class TwoViews(torch.nn.Module):
        def __init__(self, encoder, head):
            super().__init__()
            self.encoder, self.head = encoder, head

        def forward(self, v1, v2):
            return self.head(self.encoder(v1)), self.head(self.encoder(v2))

    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.manual_seed(0)
    plain = TwoViews(build_encoder({"name": "small_cnn", "in_channels": 1, "width": 32}), ProjectionHead(128, 64))
    parallel = sync_batch_norm(copy.deepcopy(plain), device)
    plain.to(device).train()
    parallel.to(device).train()
    images, _ = blobs(batch, 0)
    g = torch.Generator().manual_seed(0)
    x = images.float().div(255)
    v1, v2 = random_views(x, g, **AUG).to(device), random_views(x, g, **AUG).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group(backend, init_method=f"file://{tmp}/group", rank=0, world_size=1)
        try:
            ddp = DistributedDataParallel(parallel, device_ids=[device.index or 0] if device.type == "cuda" else None)
            rows = {}
            for name, model, gather in (("plain", plain, lambda z: z), ("data-parallel", ddp, _GatherWithGrad.apply)):
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)
                seconds, first = 0.0, None
                for step in range(steps + 1):
                    _sync(device)
                    t0 = time.perf_counter()
                    z1, z2 = model(v1, v2)
                    loss = nt_xent_loss(gather(z1), gather(z2), 0.5)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if first is None:
                        first = (loss.item(), torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
                    opt.step()
                    _sync(device)
                    if step:  # the first step warms up kernels and allocators
                        seconds += time.perf_counter() - t0
                rows[name] = {"loss": first[0], "grads": first[1], "samples/s": batch * steps / seconds}
        finally:
            dist.destroy_process_group()
    ref, dp = rows["plain"], rows["data-parallel"]
    return {"check": f"data-parallel SimCLR step ({backend}, 1 process, batch {batch})", "device": device.type,
            "loss plain": ref["loss"], "loss data-parallel": dp["loss"],
            "grad rel diff": float((dp["grads"] - ref["grads"]).norm() / ref["grads"].norm()),
            "plain samples/s": ref["samples/s"], "data-parallel samples/s": dp["samples/s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--compare", choices=("cuda", "cpu"), default="cuda",
                    help="cuda: the full check against CUDA; cpu: only the per-family checks, CPU against CPU")
    args = ap.parse_args()
    if args.compare == "cpu":
        raise SystemExit(0 if cpu_self_check(Path(args.out)) else 1)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA device (--compare cpu runs the per-family checks on the CPU)")
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    images, labels = blobs(4096, 0)
    report: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
                    "cpu_threads": torch.get_num_threads()}
    speed = []
    for dev in (cpu, cuda):
        loss, ips = acl_epoch(dev, images)
        speed.append({"check": "ACL/DynACL epoch (4096 images, PGD-5)", "device": dev.type, "images/s": ips,
                      "loss": loss})
        picked, seconds, restored = rcs_selection(dev, images[:2048])
        speed.append({"check": "RCS selection (2048 images, 20%)", "device": dev.type, "seconds": seconds,
                      "head restored": restored, "first picks": picked[:4]})
        first, last, its = glad_steps(dev, images, labels)
        speed.append({"check": "GLaD DM, feature layer 2, ipc 10", "device": dev.type, "iterations/s": its,
                      "loss first→last": f"{first:.3f}→{last:.3f}"})
    report["speed"] = speed
    report["data_parallel"] = [data_parallel_step(cuda), data_parallel_step(cpu, steps=3)]
    report["candidate_gradients_cpu_vs_cuda_rel_diff"] = candidate_agreement(images)
    report["svd_exact_vs_power_rel_diff"] = svd_agreement()
    report["attacks_cuda"] = attacks(cuda, images, labels)
    report["attacks_cpu"] = attacks(cpu, images, labels, names=("pgd", "mifgsm"))
    family_rows, family_md = family_checks("cuda")
    report["families"] = family_rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    md = [f"# GPU check ({report['gpu']}, torch {report['torch']}, {report['cpu_threads']} CPU threads)", "",
          markdown_table(speed), "",
          f"- RCS candidate gradients, CPU vs CUDA, relative difference: "
          f"{report['candidate_gradients_cpu_vs_cuda_rel_diff']:.2e}",
          f"- rank-1 approximation, exact SVD vs power iteration (100 its), relative difference: "
          f"{report['svd_exact_vs_power_rel_diff']:.2e}", "", "## Data-parallel step (train.workers)", "",
          markdown_table(report["data_parallel"]), "", "## Attacks on CUDA", "",
          markdown_table(report["attacks_cuda"]), "", "## Attacks on CPU", "", markdown_table(report["attacks_cpu"])]
    md += ["", *family_md]
    (out / "gpu_check.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    if not all(r["agree"] for r in family_rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
