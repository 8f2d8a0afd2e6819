"""Streamed vs loaded evaluation (issue 34): peak resident memory of ``image.evaluate``'s probe part when its splits
are read batch by batch from the shards instead of loaded, and a check that the scores are the same.

Arms, each in its own process (a freed split stays in the allocator's heap, so two arms in one process would share
a peak): ``old`` (the stage's code before it streamed: whole splits, scored as float copies), ``loaded``
(``train.stream: never``: whole uint8 splits, scored batch by batch) and ``streamed`` (``auto``, the default). The
last two run :func:`repflow.families.image.stages.evaluate.probes_and_attacked_subset` (features, SLF probe, train
/ test / val accuracy, the attacked subset; no Ray grid), all three on the same synthetic raw shards: ``--train``
images of 3 x 48 x 48 (20000: 132 MiB of uint8) plus 2000 test and 1000 val, with a random ``small_cnn`` of width 4
(its activations stay small next to the split). ALF is off: it draws shuffled batches, streamed through
``train.shuffle_buffer`` encoded samples (the default 10000 holds that many images), and its scores differ by order
(the stage docstring). Peak = the process's resident high-water mark from just before the call
(``repflow.memory.PeakMemory``), above the resident memory then (``extra``).

    python -m benchmarks.stream_evaluate [--train 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("REPFLOW_PROGRESS", "0")

import numpy as np  # noqa: E402

from benchmarks._common import write_results  # noqa: E402

ARMS = {"old": "old", "loaded": "never", "streamed": "auto"}

_ARM = """
import json, sys, time, torch, yaml
torch.set_num_threads(1)
from repflow.attacks import accuracy
from repflow.families.image.models import ProbedEncoder, build_encoder
from repflow.families.image.probes import embed
from repflow.families.image.stages.evaluate import probes_and_attacked_subset
from repflow.family import parse_params
from repflow.memory import PeakMemory
from repflow.probe import fit_linear_probe
from repflow.shards import ShardSet

folder, arm = sys.argv[1], sys.argv[2]
raw = yaml.safe_load(open("params.yaml"))
raw.update(device="cpu", train={**raw["train"], "stream": "never" if arm == "old" else arm},
           evaluate={**raw["evaluate"], "alf": False, "probe_epochs": 5, "max_test": 500})
p = parse_params(raw)
data = ShardSet(folder)
torch.manual_seed(0)
encoder = build_encoder({"name": "small_cnn", "in_channels": 3, "width": 4, "mean": [0.5] * 3, "std": [0.25] * 3})
import torchvision.io  # noqa: F401  (the readers import it on first decode; not part of the peak)
peak = PeakMemory()
base = peak.start()
cpu = time.process_time()
if arm == "old":  # the stage's code before it streamed, line for line
    cfg = p.evaluate
    x_tr, y_tr = data.load("train")
    x_te, y_te = data.load("test")
    probe = fit_linear_probe(embed(encoder, x_tr), y_tr, data.num_classes, epochs=cfg.probe_epochs, lr=cfg.probe_lr,
                             batch_size=cfg.probe_batch_size, seed=p.seed)
    model = ProbedEncoder(encoder.cpu(), probe).eval()
    xf_te = x_te.float().div(255)
    metrics = {"clean_acc": accuracy(model, xf_te, y_te), "train_acc": accuracy(model, x_tr.float().div(255), y_tr)}
    x_val, y_val = data.load("val")
    metrics["val_acc"] = accuracy(model, x_val.float().div(255), y_val)
    pick = torch.randperm(len(x_te), generator=torch.Generator().manual_seed(p.seed))[:cfg.max_test].sort().values
    probes, x_att = {"slf": probe}, xf_te[pick]
else:
    probes, metrics, x_att, y_att = probes_and_attacked_subset(p, data, encoder, torch.device("cpu"))
print(json.dumps({"base_mb": base, "peak_mb": peak.stop(), "cpu_s": time.process_time() - cpu, "metrics": metrics,
                  "probe": probes["slf"].weight.double().sum().item(), "attacked": x_att.double().sum().item()}))
"""


def write_set(folder: Path, n_train: int) -> None:
    from repflow.manifest import staged_output
    from repflow.shards import write_image_split

    rng = np.random.default_rng(0)
    meta = {"classes": [str(c) for c in range(10)], "shape": [3, 48, 48], "mean": [0.5] * 3, "std": [0.25] * 3,
            "splits": {}}
    with staged_output(folder, stage="prep", meta=meta) as tmp:
        for split, n in (("train", n_train), ("test", 2000), ("val", 1000)):
            labels = np.arange(n) % 10
            images = (rng.integers(0, 128, (n, 48, 48, 3), dtype=np.uint8) + 12 * labels[:, None, None, None])
            meta["splits"][split] = write_image_split(tmp, split, images.astype(np.uint8), labels, shard_size=1000,
                                                      image_format="raw")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=int, default=20_000, help="training images (3x48x48 uint8 each)")
    args = ap.parse_args()
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "REPFLOW_PROGRESS": "0"}
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        write_set(Path(tmp) / "set", args.train)
        for arm, stream in ARMS.items():
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", _ARM, str(Path(tmp) / "set"), stream], env=env, cwd=repo,
                                 capture_output=True, text=True, check=True)
            results[arm] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[arm]
            rows.append({"arm": arm, "train.stream": "never" if arm == "old" else stream, "peak_rss_mb": r["peak_mb"],
                         "start_rss_mb": r["base_mb"],
                         "extra_mb": r["peak_mb"] - r["base_mb"], "cpu_s": r["cpu_s"],
                         "wall_s": time.perf_counter() - t0, **r["metrics"]})
            print(rows[-1], flush=True)
    same = all(results[a][k] == results["streamed"][k] for a in ("old", "loaded")
               for k in ("metrics", "probe", "attacked"))
    split_mb = args.train * 3 * 48 * 48 / 2**20
    notes = [f"{args.train} training images of 3x48x48 ({split_mb:.0f} MiB uint8), 2000 test, 1000 val, raw shards "
             "of 1000; random small_cnn width 4; ALF off; probe 5 epochs; 500 attacked test images.",
             f"Scores, SLF probe weights and attacked subset identical in all three arms: {same}.",
             "Reading: the old arm holds the uint8 train and test splits and a float copy of each split while it "
             "is scored (4 bytes a pixel); the loaded arm the uint8 splits only; the streamed arm one batch (512 "
             "images to embed, 256 to score), the features and the attacked subset."]
    write_results("stream_evaluate", "Streamed vs loaded evaluation: peak resident memory", rows, notes,
                  extra={"identical": same})


if __name__ == "__main__":
    main()
