"""``train.workers: 2`` through Ray Train (TorchTrainer, gloo, 2 CPU workers) against the one-process stage: one
test, one Ray instance (the session's), the tiny mnist5k shards. The two-rank arithmetic and the resume of a
two-rank checkpoint by one process are tested without Ray in tests/test_data_parallel.py."""
from __future__ import annotations

import json

import pytest
import torch

from repflow.checkpoints import load_tensors
from repflow.families.image.models import build_encoder
from repflow.family import parse_params
from repflow.shards import ShardSet
from tests.conftest import tiny_params


@pytest.mark.slow
def test_two_ray_train_workers_follow_the_one_process_loss_curve(tiny_shards, tmp_path, mlflow_tmp, ray_session):
    """Same global batch (64), same start and batches. Epoch 1 (two steps) is the arithmetic: its loss equals one
    process's to 1e-6 (relative). After that, float-order noise grows chaotically through Adam's normalised steps
    (measured on this data: a 1e-7 relative nudge of one process's start weights moves its features 0.1-0.3 %
    after 3 epochs, a 1e-5 nudge 6-10 %), so later epochs' losses are held to 1e-2 and the final features to 5 %
    of one process's, while training moves them by far more than that. The stage's outputs are the usual ones."""
    from repflow.stage import run_stage

    # both in memory (train.stream: never): the data-parallel workers always are, and the stream's order differs
    one = parse_params(tiny_params(train={"epochs": 3, "stream": "never"}))
    two = parse_params(tiny_params(train={"epochs": 3, "workers": 2, "stream": "never"}))
    selection = run_stage("image.select", one, {"shards": tiny_shards, "views": None}, tmp_path / "select")
    inputs = {"shards": tiny_shards, "views": None, "selection": selection}
    out_one = run_stage("image.train", one, inputs, tmp_path / "train1")
    out_two = run_stage("image.train", two, inputs, tmp_path / "train2")
    h1 = json.loads((out_one / "history.json").read_text())["history"]
    h2 = json.loads((out_two / "history.json").read_text())["history"]
    assert [h["workers"] for h in h2] == [2, 2, 2]
    assert [h["trained"] for h in h2] == [h["trained"] for h in h1] == [128, 128, 128]
    assert h2[0]["loss"] == pytest.approx(h1[0]["loss"], rel=1e-6)
    for mine, ref in zip(h2[1:], h1[1:]):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-2)
    # the same function: features of the test images (per-tensor weights can differ more where a gradient is ~0,
    # e.g. a conv bias before batch norm, whose float-order noise Adam's normalised step enlarges)
    w1, c1 = load_tensors(out_one / "encoder.safetensors")
    w2, c2 = load_tensors(out_two / "encoder.safetensors")
    assert c1 == c2
    start, _ = load_tensors(selection / "warmup.safetensors")
    start = {k[len("encoder/"):]: v for k, v in start.items() if k.startswith("encoder/")}
    encoders = []
    for weights in (w1, w2, start):
        encoders.append(build_encoder(c1).eval())
        encoders[-1].load_state_dict(weights)
    x, _ = ShardSet(tiny_shards).load("test")
    with torch.no_grad():
        f1, f2, f0 = (e(x[:64].float().div(255)) for e in encoders)
    assert float((f2 - f1).norm() / f1.norm()) < 0.05
    assert float((f0 - f1).norm() / f1.norm()) > 0.2  # training moved the features: 5 % can tell trained from not
    assert (out_two / "loss.png").is_file() and (out_two / "head.safetensors").is_file()

    # the stage is itself a Ray task holding a CPU: workers that do not fit what is left ask for a fair share
    # instead of waiting forever for CPUs that do not exist (a 2-CPU machine, train.workers: 2)
    from repflow.cluster import worker_cpus

    total = ray_session.cluster_resources()["CPU"]
    assert worker_cpus(ray_session, 2, 1) == 1.0
    assert worker_cpus(ray_session, int(total) * 2, 1) == pytest.approx(0.5, abs=1e-4)
    in_task = ray_session.remote(num_cpus=1)(lambda: worker_cpus(ray_session, 2, int(total)))
    assert ray_session.get(in_task.remote(), timeout=120) == pytest.approx((total - 1) / 2, abs=1e-4)
