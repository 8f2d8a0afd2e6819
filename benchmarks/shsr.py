"""SHSR at CPU scale, ×2: bicubic vs an EDSR-style baseline vs SHSR with its DTB on the trunk (the registered
form when this ran), on the branch, on the branch with whole-image statistics, and without DTB; Y-PSNR / SSIM on
held-out whole photos, PSNR-vs-step curves, and parameters, MACs, the other element operations and measured
time in one table.

Claims checked (ACM TOMM 2023, arXiv 2007.09552): SHSR matches or beats the EDSR-style baseline with fewer
parameters and MACs; the distribution transformation block (DTB) helps. And two design questions of this
reconstruction (issue 32): where DTB sits (trunk ``DTB(SMB(x)) + x`` vs branch ``x + DTB(fuse)``) and its
statistics window (7×7 vs the whole image).

Same start for every arm: one pool of training patches (scikit-image's bundled photos, the photo split of
sr.prep at data seed 0, LR patches of 48 px = HR 96 px at ×2), the same batches and flips per seed (train_sr
draws them from seed and epoch alone; an "epoch" here is one chunk of ``--eval-every`` steps on its own
patches), the same steps and learning rate; each arm's initial weights come from the seed.

    python -m benchmarks.shsr [--seeds 5] [--steps 800] [--batch 4] [--channels 16] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import (RESULTS, Tested, interval_text, mean_std, write_claims,  # noqa: E402
                                write_results)
from repflow.families.sr.imresize import imresize  # noqa: E402
from repflow.families.sr.inference import count_macs, count_other_ops, count_params  # noqa: E402
from repflow.families.sr.models import DTB, SR_MODELS, build_sr_model  # noqa: E402
from repflow.families.sr.patches import lr_of, random_patches, split_photos  # noqa: E402
from repflow.families.sr.photos import SourceError, read_folder, read_mate_backgrounds, read_skimage  # noqa: E402
from repflow.families.sr.stages.evaluate import images_per_second, score  # noqa: E402
from repflow.families.sr.stages.prep import centre_crop  # noqa: E402
from repflow.families.sr.training import train_sr  # noqa: E402
from repflow.report import panel_plot  # noqa: E402
from repflow.verdict import Claim, positive_control, separation_check  # noqa: E402

SCALE = 2
LR_PATCH = 48
ARMS = {  # name → (registered model, its options)
    "edsr": ("edsr", {}),
    "shsr_trunk": ("shsr", {"dtb_placement": "trunk", "window": 7}),
    "shsr_branch": ("shsr", {"dtb_placement": "branch", "window": 7}),
    "shsr_branch_global": ("shsr", {"dtb_placement": "branch", "window": None}),
    "shsr_no_dtb": ("shsr_no_dtb", {}),
}
DTB_ARMS = ("shsr_trunk", "shsr_branch", "shsr_branch_global")
SMALLEST = 0.05  # dB

PAPER = SR_MODELS["shsr"].paper
# declared before the run: claim → (method arm, reference arm); Y-PSNR ×2 on the held-out photos, paired by seed
CLAIMS = {
    Claim("sr.shsr_vs_edsr_x2", "sr", PAPER, "SHSR (DTB on the trunk, window 7) reconstructs ×2 better than an "
          "EDSR-style baseline (with fewer parameters and MACs).", "Y-PSNR ×2", "higher", SMALLEST, "dB",
          ("shsr",)): ("shsr_trunk", "edsr"),
    Claim("sr.dtb_gain_x2", "sr", PAPER, "SHSR's distribution transformation block (on the trunk, window 7) "
          "raises ×2 quality over SHSR without it.", "Y-PSNR ×2", "higher", SMALLEST, "dB",
          ("shsr", "shsr_no_dtb")): ("shsr_trunk", "shsr_no_dtb"),
    Claim("sr.dtb_branch_gain_x2", "sr", PAPER, "SHSR's DTB placed on the SMB's branch (x + DTB(fuse), window 7) "
          "raises ×2 quality over SHSR without DTB.", "Y-PSNR ×2", "higher", SMALLEST, "dB",
          ("shsr", "shsr_no_dtb")): ("shsr_branch", "shsr_no_dtb"),
    Claim("sr.dtb_placement_x2", "sr", PAPER, "DTB on the SMB's branch (x + DTB(fuse)) gives better ×2 quality "
          "than DTB on the whole trunk (DTB(SMB(x)) + x).", "Y-PSNR ×2", "higher", SMALLEST, "dB",
          ("shsr",)): ("shsr_branch", "shsr_trunk"),
    Claim("sr.dtb_window_x2", "sr", PAPER, "DTB's local 7×7 statistics give better ×2 quality than whole-image "
          "statistics (both on the branch).", "Y-PSNR ×2", "higher", SMALLEST, "dB",
          ("shsr",)): ("shsr_branch", "shsr_branch_global"),
}
CONTROL_OF = {  # claim → the DTB arms whose positive control must pass
    "sr.shsr_vs_edsr_x2": (), "sr.dtb_gain_x2": ("shsr_trunk",), "sr.dtb_branch_gain_x2": ("shsr_branch",),
    "sr.dtb_placement_x2": ("shsr_trunk", "shsr_branch"),
    "sr.dtb_window_x2": ("shsr_branch", "shsr_branch_global"),
}


def judged(payload: dict) -> list[Tested]:
    """The declared claims from a run's payload (``per_seed``, ``control``, ``bicubic``, ``args``, as shsr.json
    stores them). Controls: the floor check (the EDSR-style reference beats bicubic by more than the smallest
    effect); for the EDSR claim, the premise that the held-out metric resolves training (EDSR's curve-set PSNR
    at the last step minus at the first point); for the DTB claims, the synthetic contrast task on which a
    DTB arm must beat the same network without DTB."""
    by = {(r["arm"], r["seed"]): r for r in payload["per_seed"]}
    seeds = sorted({r["seed"] for r in payload["per_seed"]})
    a = payload["args"]
    scale = {"data": f"scikit-image's bundled photos (training split), {a['steps'] * a['batch']} LR patches of "
                     f"{LR_PATCH} px; {payload['held_out']['count']} held-out photos",
             "model": f"{a['channels']} channels, SHSR 6 blocks, EDSR 16 blocks",
             "steps": f"{a['steps']} steps of batch {a['batch']}", "device": "cpu"}
    floor = separation_check([payload["bicubic"]["psnr_y"]] * len(seeds), [by["edsr", s]["psnr_y"] for s in seeds],
                             SMALLEST, name="bicubic vs EDSR-style ×2")
    learns = positive_control([by["edsr", s]["curve"][-1] - by["edsr", s]["curve"][0] for s in seeds],
                              name="the held-out metric resolves training (EDSR: last − first curve point)")
    ctl = {(r["arm"], r["seed"]): r["psnr"] for r in payload["control"]}
    dtb_controls = {arm: positive_control([ctl[arm, s] - ctl["shsr_no_dtb", s] for s in seeds],
                                          name=f"synthetic contrast task: {arm} − no DTB")
                    for arm in DTB_ARMS}
    out = []
    for claim, (m, r) in CLAIMS.items():
        controls = (floor, learns) if not CONTROL_OF[claim.id] else (floor, *(dtb_controls[x]
                                                                             for x in CONTROL_OF[claim.id]))
        out.append(Tested(claim, [by[m, s]["psnr_y"] - by[r, s]["psnr_y"] for s in seeds], controls, scale,
                          {m: [by[m, s]["psnr_y"] for s in seeds], r: [by[r, s]["psnr_y"] for s in seeds]}))
    return out


def held_out_photos(test_skimage: list[tuple[str, np.ndarray]], max_side: int) -> tuple[list, list[str]]:
    """The held-out photos: scikit-image's test split, scikit-learn's two sample photos and Debian's
    mate-backgrounds nature photos where installed, each reduced (:func:`reduced`) and centre-cropped to ≤
    ``max_side`` px; (photos, notes)."""
    import sklearn.datasets

    photos, notes = list(test_skimage), []
    sources = [("scikit-learn", lambda: read_folder(Path(sklearn.datasets.__file__).parent / "images")),
               ("mate-backgrounds", read_mate_backgrounds)]
    for label, read in sources:
        try:
            extra = read()
        except SourceError as exc:
            notes.append(f"{label} left out: {exc}")
            continue
        photos += [(f"{label}/{n}", im) for n, im in zip(extra.names, extra.images)]
    return [(n, centre_crop(reduced(im, max_side), max_side)) for n, im in photos], notes


def reduced(photo: np.ndarray, max_side: int) -> np.ndarray:
    """``photo`` (H, W, 3) uint8 shrunk by the integer factor ⌊min(H, W) / max_side⌋ when that is ≥ 2
    (MATLAB-style antialiased bicubic), so a centre crop of a 1280–2560 px wallpaper holds a scene's detail
    rather than a few defocused pixels of it; smaller photos pass unchanged."""
    factor = min(photo.shape[:2]) // max_side
    if factor < 2:
        return photo
    x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)[None].float().div(255)
    small = imresize(x, scale=1 / factor).clamp(0, 1)
    return torch.round(small[0] * 255).to(torch.uint8).permute(1, 2, 0).numpy()


def as_pairs(photos: list[tuple[str, np.ndarray]]) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, LR float (1, 3, h, w) in [0, 1], HR uint8 (3, H, W)) per photo."""
    out = []
    for name, hr in photos:
        out.append((name, torch.from_numpy(lr_of(hr, SCALE)).permute(2, 0, 1)[None].float().div(255),
                    torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)))
    return out


def evaluate(model, pairs) -> tuple[float, float]:
    """Mean Y-PSNR (dB) and SSIM over whole images (one pass each: no tiling, so whole-image DTB statistics
    are those of the photo)."""
    with torch.no_grad():
        s = [score(model(lr).clamp(0, 1), hr, SCALE) for _, lr, hr in pairs]
    return float(np.mean([v[0] for v in s])), float(np.mean([v[1] for v in s]))


def dtb_gains(model, pairs) -> dict:
    """DTB's gain 1/√(σ² + eps) over every DTB input position of ``pairs``: its maximum and the share of
    positions above 10 (the eps issue: a flat window's gain is bounded only by eps^(-1/2))."""
    gains = []

    def hook(module, inputs, _):
        _, var = module.moments(inputs[0])
        gains.append(torch.rsqrt(var + module.eps).flatten())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, DTB)]
    with torch.no_grad():
        for _, lr, _ in pairs:
            model(lr)
    for h in handles:
        h.remove()
    g = torch.cat(gains)
    return {"max": float(g.max()), "share_above_10": float((g > 10).float().mean()), "median": float(g.median())}


def train_arm(arm: str, seed: int, chunks: list[tuple[torch.Tensor, torch.Tensor]], a: dict, curve_pairs,
              test_pairs) -> dict:
    """Train one arm for one seed on the chunks in order (one train_sr epoch each, the Adam state carried
    over), scoring the curve set after each; then the held-out photos and DTB's gains."""
    name, options = ARMS[arm]
    torch.manual_seed(seed)
    model = build_sr_model(name, SCALE, channels=a["channels"], **options)
    state: dict = {}

    def keep(_epoch, _stats, opt):
        state["opt"] = opt.state_dict()

    curve, losses, cpu = [], [], 0.0
    for epoch, (lr_chunk, hr_chunk) in enumerate(chunks):
        t0 = time.process_time()
        history = train_sr(model, lr_chunk, hr_chunk, epochs=epoch + 1, start_epoch=epoch, batch_size=a["batch"],
                           lr=a["lr"], lr_half_every=a["lr_half_every"], seed=seed,
                           optimizer_state=state.get("opt"), on_epoch=keep)
        cpu += time.process_time() - t0
        curve.append(evaluate(model, curve_pairs)[0])
        losses.append(history[-1]["loss"])
    psnr, ssim = evaluate(model, test_pairs)
    row = {"arm": arm, "seed": seed, "psnr_y": psnr, "ssim_y": ssim, "curve": curve, "loss": losses,
           "train_cpu_s": cpu, "s_per_step": cpu / a["steps"]}
    if arm in DTB_ARMS:
        row["dtb_gain"] = dtb_gains(model, curve_pairs)
    print(f"[{arm} seed {seed}] Y-PSNR {psnr:.3f} dB, SSIM {ssim:.4f}, curve "
          f"{' '.join(f'{c:.2f}' for c in curve)}, train {cpu:.0f} CPU s", flush=True)
    return row


def contrast_task(images: list[np.ndarray], count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The positive control's data, uint8 (count, 3, 24, 24) LR / (count, 3, 48, 48) HR: each LR patch's
    contrast is cut by a random gain g ∈ [0.25, 1] about its mean (a degradation set by local statistics), and
    the target is the HR patch with its contrast set to a fixed standard deviation (0.2) about its mean. The
    target does not depend on g, so the network must divide out the input's contrast: a normalisation (DTB)
    does that in one step, a conv-ReLU network only approximately."""
    rng = np.random.default_rng(seed)
    hr = torch.from_numpy(random_patches(images, 48, count, seed)).permute(0, 3, 1, 2).float().div(255)
    lr = lr_of(hr, 2)
    g = torch.from_numpy(rng.uniform(0.25, 1.0, size=(count, 1, 1, 1))).float()
    m_lr = lr.mean(dim=(1, 2, 3), keepdim=True)
    m_hr, s_hr = hr.mean(dim=(1, 2, 3), keepdim=True), hr.std(dim=(1, 2, 3), keepdim=True)
    x = m_lr + g * (lr - m_lr)
    y = m_hr + 0.2 * (hr - m_hr) / (s_hr + 1e-3)
    as_u8 = lambda t: torch.round(t.clamp(0, 1) * 255).to(torch.uint8)  # noqa: E731
    return as_u8(x), as_u8(y)


def run_control(train_images, test_images, a: dict) -> list[dict]:
    """Each DTB arm and the no-DTB arm at a tiny size (8 channels, 2 blocks) on :func:`contrast_task`; RGB
    PSNR (dB) on held-out patches."""
    x_tr, y_tr = contrast_task(train_images, a["control_steps"] * 8, 1)
    x_te, y_te = contrast_task(test_images, 256, 2)
    rows = []
    for seed in range(a["seeds"]):
        for arm in (*DTB_ARMS, "shsr_no_dtb"):
            name, options = ARMS[arm]
            torch.manual_seed(seed)
            model = build_sr_model(name, SCALE, channels=8, blocks=2, **options)
            t0 = time.process_time()
            train_sr(model, x_tr, y_tr, epochs=1, batch_size=8, lr=2e-3, lr_half_every=1, seed=seed)
            with torch.no_grad():
                mse = (model(x_te.float() / 255).clamp(0, 1) - y_te.float() / 255).square().mean()
            rows.append({"arm": arm, "seed": seed, "psnr": float(-10 * torch.log10(mse)),
                         "cpu_s": time.process_time() - t0})
        print(f"control seed {seed}: " + ", ".join(f"{r['arm']} {r['psnr']:.2f}" for r in rows[-4:]), flush=True)
    return rows


def costs(arm: str, a: dict, s_per_step: float) -> dict:
    if arm == "bicubic":
        model = build_sr_model("bicubic", SCALE)
    else:
        name, options = ARMS[arm]
        model = build_sr_model(name, SCALE, channels=a["channels"], **options)
    model.eval()
    with torch.no_grad():
        per_s = images_per_second(model, 8, SCALE)
    other = count_other_ops(model, (1, 3, LR_PATCH, LR_PATCH))
    return {"params": count_params(model), "macs": count_macs(model, (1, 3, LR_PATCH, LR_PATCH)),
            "other_ops": sum(other.values()), "other_by_op": other, "ms_per_image": 1000 / per_s,
            "train_s_per_step": s_per_step}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=50, help="steps per chunk (one curve point each)")
    ap.add_argument("--lr-half-every", type=int, default=4, help="chunks between halvings of the learning rate")
    ap.add_argument("--control-steps", type=int, default=200)
    ap.add_argument("--max-side", type=int, default=288, help="held-out photos centre-cropped to this (HR px)")
    ap.add_argument("--curve-side", type=int, default=96, help="curve set: held-out centre crops of this (HR px)")
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="shsr", help="results file stem")
    args = ap.parse_args()
    for key in ("seeds", "steps", "batch", "channels", "eval_every", "lr_half_every", "control_steps"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} {getattr(args, key)}: must be >= 1")
    if args.steps % args.eval_every:
        ap.error(f"--steps {args.steps} must be a multiple of --eval-every {args.eval_every}")
    if args.max_side % 12 or args.curve_side % 12:
        ap.error(f"--max-side {args.max_side} / --curve-side {args.curve_side}: must be multiples of 12")
    torch.set_num_threads(args.threads)
    a = vars(args)
    started, cpu0 = time.time(), time.process_time()

    photos = read_skimage()
    train_idx, test_idx = split_photos(len(photos.images), 0.25, 0)  # as sr.prep at seed 0
    train_images = [photos.images[i] for i in train_idx]
    test_skimage = [(f"skimage/{photos.names[i]}", photos.images[i]) for i in test_idx]
    held_out, source_notes = held_out_photos(test_skimage, args.max_side)
    test_pairs = as_pairs(held_out)
    curve_pairs = as_pairs([(n, centre_crop(im, args.curve_side)) for n, im in held_out])
    n_chunks = args.steps // args.eval_every
    per_chunk = args.eval_every * args.batch
    hr_all = random_patches(train_images, SCALE * LR_PATCH, n_chunks * per_chunk, 0)
    chunks = []
    for c in range(n_chunks):
        hr = hr_all[c * per_chunk:(c + 1) * per_chunk]
        chunks.append((torch.from_numpy(lr_of(hr, SCALE)).permute(0, 3, 1, 2).contiguous(),
                       torch.from_numpy(hr).permute(0, 3, 1, 2).contiguous()))
    print(f"{len(train_images)} training photos, {n_chunks * per_chunk} patches; {len(held_out)} held-out photos",
          flush=True)
    with torch.no_grad():
        bic = [score(imresize(lr, scale=SCALE).clamp(0, 1), hr, SCALE) for _, lr, hr in test_pairs]
        bic_curve = float(np.mean([score(imresize(lr, scale=SCALE).clamp(0, 1), hr, SCALE)[0]
                                   for _, lr, hr in curve_pairs]))
    bicubic = {"psnr_y": float(np.mean([b[0] for b in bic])), "ssim_y": float(np.mean([b[1] for b in bic])),
               "curve": bic_curve}

    t_control = time.process_time()
    control = run_control(train_images, [im for _, im in test_skimage], a)
    control_cpu = time.process_time() - t_control
    results = [train_arm(arm, seed, chunks, a, curve_pairs, test_pairs)
               for seed in range(args.seeds) for arm in args.arms]
    by = {(r["arm"], r["seed"]): r for r in results}
    seeds = list(range(args.seeds))
    steps = [args.eval_every * (c + 1) for c in range(n_chunks)]

    rows, cost = [], {}
    for arm in ("bicubic", *args.arms):
        if arm == "bicubic":
            psnr, ssim, cpu = (bicubic["psnr_y"], 0.0), (bicubic["ssim_y"], 0.0), 0.0
        else:
            psnr = mean_std([by[arm, s]["psnr_y"] for s in seeds])
            ssim = mean_std([by[arm, s]["ssim_y"] for s in seeds])
            cpu = float(np.mean([by[arm, s]["s_per_step"] for s in seeds]))
        cost[arm] = costs(arm, a, cpu)
        c = cost[arm]
        rows.append({"model": arm, "Y-PSNR dB": f"{psnr[0]:.3f} ± {psnr[1]:.3f}",
                     "SSIM": f"{ssim[0]:.4f} ± {ssim[1]:.4f}", "params": c["params"],
                     "MACs (48² LR)": f"{c['macs'] / 1e6:.1f} M", "other element ops": f"{c['other_ops'] / 1e6:.2f} M",
                     "ms / image (48² LR, batch 8)": f"{c['ms_per_image']:.2f}",
                     "train s / step": f"{cpu:.3f}" if cpu else "-"})

    def paired(m: str, r: str) -> list[float]:
        return [by[m, s]["psnr_y"] - by[r, s]["psnr_y"] for s in seeds]

    curve_mean = {arm: np.mean([by[arm, s]["curve"] for s in seeds], axis=0) for arm in args.arms}
    curve_sd = {arm: np.std([by[arm, s]["curve"] for s in seeds], axis=0, ddof=1) for arm in args.arms}
    base = "shsr_no_dtb" if "shsr_no_dtb" in args.arms else args.arms[0]
    gain_curves = {arm: np.mean([np.subtract(by[arm, s]["curve"], by[base, s]["curve"]) for s in seeds], axis=0)
                   for arm in args.arms if arm != base}
    RESULTS.mkdir(exist_ok=True)
    plot = panel_plot(steps, [("Y-PSNR ×2, curve set (dB)", {k: list(v) for k, v in curve_mean.items()},
                               {"bicubic": bic_curve}),
                              (f"gain over {base} (dB), mean of seeds", {k: list(v) for k, v in gain_curves.items()},
                               {"0": 0.0})],
                      RESULTS / f"{args.name}.png", xlabel="optimiser step",
                      title=f"SHSR ×2: PSNR vs step ({args.seeds} seeds, ± sd)",
                      errors={k: list(v) for k, v in curve_sd.items()})

    last_half = n_chunks // 2
    notes = [
        f"Protocol: training on scikit-image's bundled photos (the {len(train_images)} photos of sr.prep's training "
        f"split at data seed 0), {n_chunks * per_chunk} random LR patches of {LR_PATCH} px (HR {SCALE * LR_PATCH} px), "
        f"LR by MATLAB-style antialiased bicubic, quantised to uint8; L1, Adam lr {args.lr} halved every "
        f"{args.lr_half_every * args.eval_every} steps, batch {args.batch}, {args.steps} steps, random flips / "
        f"rotations; {args.channels} channels, SHSR 6 blocks, EDSR 16 residual blocks; seeds {seeds}; one torch "
        f"thread. Bicubic is deterministic (± 0).",
        f"Held-out set: {len(held_out)} photos ({', '.join(n for n, _ in held_out)}), centre-cropped to ≤ "
        f"{args.max_side} px (photos at least twice that size first shrunk by an integer factor), scored whole "
        f"(one pass, no tiles) on BT.601 luma with 2 border pixels shaved, outputs "
        f"quantised to uint8. The curves use the central {args.curve_side} px of the same photos, scored after every "
        f"{args.eval_every} steps." + (" " + "; ".join(source_notes) if source_notes else ""),
        "Differences from issue 32's ask, named: ×2 only (no ×4 run: the CPU budget of about 3000 CPU-seconds for "
        f"the whole run fits 5 arms × 5 seeds at ×2 only); {args.steps} steps per arm instead of ≥ 5000 "
        f"(5000 steps × 25 arm-seeds at the measured ~0.1 s a step would take ~12,500 CPU-s; the machine's 2 "
        f"cores were shared with three other jobs, so the run was sized to finish before the deadline), at batch "
        f"{args.batch} "
        f"and {args.channels} channels (the paper and the registered default use wider models); the window ablation "
        "runs at the branch placement only (no trunk + whole-image arm).",
        "Differences from the paper's protocol: DIV2K is not on this machine, so training uses a few bundled photos "
        "for minutes instead of ~1000 epochs; the SMB / DTB structure is a reconstruction from the abstract and the "
        "PMRN precursor (the official code is not public); DTB's placement and window are this reconstruction's "
        "choices, here measured.",
        "Convergence (curve set, mean over seeds, dB): " + "; ".join(
            f"{arm} {curve_mean[arm][last_half - 1]:.3f} at step {steps[last_half - 1]} → {curve_mean[arm][-1]:.3f} "
            f"at step {steps[-1]} ({curve_mean[arm][-1] - curve_mean[arm][last_half - 1]:+.3f})" for arm in args.arms)
        + ". A rise in the last half of the steps means the arm had not converged.",
        "Cost columns: MACs count convolutions and matrix products (DTB's 7×7 window sums are 7×1 + 1×7 depthwise "
        "convolutions, so they are in it); 'other element ops' counts every other op that writes a tensor "
        "(elementwise add / mul / rsqrt / relu, concatenation, pixel shuffle, bicubic upsampling at 16 taps), from "
        "torch's dispatcher on one 48² LR image (`count_other_ops`); ms / image is measured (best of 3, batch 8, "
        "one thread, eval mode); train s / step is measured in this run (CPU time). Largest other ops for "
        "shsr_trunk: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in list(
            cost.get("shsr_trunk", cost[args.arms[0]])["other_by_op"].items())[:5]) + ".",
    ]
    if any(arm in DTB_ARMS for arm in args.arms):
        notes.append("DTB gain 1/√(σ² + eps) on the curve set after training (eps 1e-3, so at most 31.6), mean over "
                     "seeds: " + "; ".join(
                         f"{arm}: max {np.mean([by[arm, s]['dtb_gain']['max'] for s in seeds]):.1f}, median "
                         f"{np.mean([by[arm, s]['dtb_gain']['median'] for s in seeds]):.2f}, share of positions above "
                         f"10 {np.mean([by[arm, s]['dtb_gain']['share_above_10'] for s in seeds]):.1%}"
                         for arm in DTB_ARMS if arm in args.arms) + ".")
    ctl = {(r["arm"], r["seed"]): r["psnr"] for r in control}
    notes.append(
        f"Positive control (synthetic contrast task, {args.control_steps} steps of batch 8, 8 channels, 2 blocks, "
        f"{control_cpu:.0f} CPU s): RGB PSNR " + ", ".join(
            f"{arm} {np.mean([ctl[arm, s] for s in seeds]):.2f}" for arm in (*DTB_ARMS, "shsr_no_dtb")) + " dB.")
    for claim, (m, r) in CLAIMS.items():
        if m in args.arms and r in args.arms:
            d = paired(m, r)
            notes.append(f"{m} − {r}: {mean_std(d)[0]:+.3f} ± {mean_std(d)[1]:.3f} dB ({interval_text(d)}).")
    if "shsr_trunk" in args.arms and "edsr" in args.arms:
        notes.append(f"shsr_trunk has {cost['shsr_trunk']['params'] / cost['edsr']['params']:.0%} of EDSR's "
                     f"parameters, {cost['shsr_trunk']['macs'] / cost['edsr']['macs']:.0%} of its MACs and takes "
                     f"{cost['shsr_trunk']['ms_per_image'] / cost['edsr']['ms_per_image']:.2f}× its measured "
                     "inference time.")
    total_cpu = time.process_time() - cpu0
    notes.append(f"Cost of this run: {total_cpu:.0f} CPU s ({control_cpu:.0f} for the control), wall "
                 f"{time.time() - started:.0f} s, one process × {args.threads} torch thread(s). Plot: {plot.name}.")
    payload = {"per_seed": results, "control": control, "bicubic": bicubic, "args": a, "steps": steps,
               "held_out": {"count": len(held_out), "names": [n for n, _ in held_out]}, "costs": cost,
               "cpu_s": total_cpu}
    if set(args.arms) == set(ARMS) and args.name == "shsr":
        notes += write_claims(judged(payload), args.name)
    write_results(args.name, "SHSR ×2 vs EDSR-style vs bicubic, DTB placement and window, at CPU scale", rows,
                  notes, extra=payload)


if __name__ == "__main__":
    main()
