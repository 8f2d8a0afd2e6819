"""Data-parallel training without Ray: two gloo processes (torch.multiprocessing) against one process on the
whole global batch. One spawn runs every two-rank check (start-up is the cost); the one-process references
are computed here. Ray Train itself: tests/test_raytrain.py (slow)."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from repflow.checkpoints import TrainingProgress, load_tensors
from repflow.data_parallel import GroupBatchNorm, gather_with_grad, local_slice, sync_batch_norm, world
from repflow.families.image.contrastive import nt_xent_loss, supcon_loss, train_contrastive
from repflow.families.image.models import build_encoder
from repflow.families.image.models.encoders import DualBatchNorm
from repflow.families.image.train_methods import build_training_head
from repflow.family import parse_params
from tests.conftest import tiny_params

GLOBAL = 7  # an odd global batch: the ranks' slices are 4 and 3 rows
ENC = {"name": "small_cnn", "in_channels": 1, "width": 4, "mean": [0.5], "std": [0.25], "input_shape": [1, 16, 16]}


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def _batch():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(GLOBAL, 5, generator=g), torch.randn(GLOBAL, 5, generator=g),
            torch.tensor([0, 1, 0, 2, 1, 1, 0]))


def _loss_and_grads(net: nn.Module, loss_name: str, rows: slice):
    """The global-batch loss from this rank's ``rows`` and the parameter gradients after averaging."""
    from repflow.data_parallel import average_gradients

    x1, x2, y = _batch()
    net.zero_grad()
    z1, z2 = gather_with_grad(net(x1[rows])), gather_with_grad(net(x2[rows]))
    loss = nt_xent_loss(z1, z2, 0.5) if loss_name == "ntxent" else supcon_loss(z1, z2, y, 0.5)
    loss.backward()
    average_gradients(net.parameters())
    return loss.detach(), [p.grad.clone() for p in net.parameters()], net[1].running_var.clone()


def _conv_net() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4))


def _conv_loss_and_grads(net: nn.Module, rows: slice):
    """The global-batch NT-Xent of 4×4 two-channel images (batch norm over (N, H, W) per channel) from this rank's
    ``rows``: loss, the parameter gradients after averaging, the batch norm's running variance."""
    from repflow.data_parallel import average_gradients

    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.randn(GLOBAL, 2, 4, 4, generator=g) * 3 + 1, torch.randn(GLOBAL, 2, 4, 4, generator=g)
    net.zero_grad()
    loss = nt_xent_loss(gather_with_grad(net(x1[rows])), gather_with_grad(net(x2[rows])), 0.5)
    loss.backward()
    average_gradients(net.parameters())
    return loss.detach(), [p.grad.clone() for p in net.parameters()], net[1].running_var.clone()


def _params(method: str = "simclr", epochs: int = 2):
    return parse_params(tiny_params(train={"method": method, "encoder": "small_cnn", "width": 4, "proj_dim": 8,
                                           "epochs": epochs, "batch_size": 10, "lr": 0.01, "checkpoint_every": 1,
                                           "adversarial": {"steps": 1}}))


def _images() -> torch.Tensor:
    return torch.randint(0, 256, (24, 1, 16, 16), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)


def _models(params):
    torch.manual_seed(params.seed)
    enc_config = {**ENC, **({"dual_bn": True, "bn_branch": "adv"} if params.train.adversarial_training else {})}
    encoder = build_encoder(enc_config)
    head, head_config = build_training_head(params.train.method, encoder.out_dim, (1, 16, 16), proj_dim=8,
                                            dual_bn=params.train.adversarial_training)
    return encoder, head, enc_config, head_config


def _job(params, progress: Path) -> dict:
    encoder, head, enc_config, head_config = _models(params)
    return {"params": params, "key": "k", "progress": progress, "enc_config": enc_config, "head_config": head_config,
            "encoder": encoder.state_dict(), "head": head.state_dict(), "optimizer": None,
            "meta": {"epoch": 0, "history": [], "rounds": [], "selection_seconds": 0.0, "train_seconds": 0.0},
            "extra": {"coreset": torch.arange(24)}, "images": _images(), "partners": None, "labels": None}


def _rank(rank: int, size: int, port: int, out: str) -> None:
    from repflow.families.image.stages._training import data_parallel_train

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        found = {"world": torch.tensor(world())}
        rows = local_slice(GLOBAL)
        for loss_name in ("ntxent", "supcon"):
            net = sync_batch_norm(_net(), "cpu")
            found[f"{loss_name}/type"] = torch.tensor(isinstance(net[1], GroupBatchNorm))
            loss, grads, running_var = _loss_and_grads(net, loss_name, rows)
            found[f"{loss_name}/loss"] = loss
            found[f"{loss_name}/running_var"] = running_var
            for i, grad in enumerate(grads):
                found[f"{loss_name}/grad{i}"] = grad
        net = sync_batch_norm(_conv_net(), "cpu")
        loss, grads, running_var = _conv_loss_and_grads(net, rows)
        found.update({"conv/loss": loss, "conv/running_var": running_var,
                      **{f"conv/grad{i}": grad for i, grad in enumerate(grads)}})
        # the image family's worker, as Ray Train runs it: SimCLR for 2 epochs (rank 0 checkpoints), then ACL
        data_parallel_train(_job(_params(), Path(out) / "simclr.safetensors"), torch.device("cpu"))
        encoder, _ = data_parallel_train(_job(_params("acl", epochs=1), Path(out) / "acl.safetensors"),
                                         torch.device("cpu"))
        found.update({f"acl/{k}": v for k, v in encoder.state_dict().items()})
        torch.save(found, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(out)), nprocs=2, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("sections, match", [
    ({"train": {"workers": 2, "method": "masked_ae"}}, r"train.workers = 2: .*'masked_ae' is a pretext task"),
    ({"train": {"workers": 2}, "select": {"method": "rcs", "warmup_epochs": 1}},
     r"train.workers = 2: .*select.method 'rcs' re-selects"),
    ({"train": {"workers": 0}}, r"train.workers = 0"),
    ({"train": {"workers": 2, "stream": "always"}}, r"train.stream = 'always': data-parallel workers"),
])
def test_data_parallel_params_refused_before_work(sections, match):
    from repflow.config import ParamsError

    with pytest.raises(ParamsError, match=match):
        parse_params(tiny_params(**sections))


def test_local_slices_cover_the_batch_in_order():
    assert [local_slice(7, r, 2) for r in range(2)] == [slice(0, 4), slice(4, 7)]
    assert [local_slice(10, r, 3) for r in range(3)] == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert local_slice(5) == slice(0, 5)  # no process group: everything


@pytest.mark.parametrize("loss_name", ["ntxent", "supcon"])
def test_gathered_loss_and_gradients_equal_the_full_batch(two_ranks, loss_name):
    """Two ranks with 4 + 3 rows, projections gathered with gradients and batch norm over the global batch:
    the same loss, gradients and running statistics as one process on all 7 rows."""
    _, ranks = two_ranks
    loss, grads, running_var = _loss_and_grads(_net(), loss_name, slice(0, GLOBAL))
    for found in ranks:
        assert found["world"].tolist()[1] == 2 and bool(found[f"{loss_name}/type"])
        torch.testing.assert_close(found[f"{loss_name}/loss"], loss, rtol=1e-5, atol=1e-6)
        for i, grad in enumerate(grads):
            torch.testing.assert_close(found[f"{loss_name}/grad{i}"], grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(found[f"{loss_name}/running_var"], running_var, rtol=1e-5, atol=1e-6)


def test_synchronised_conv_batch_norm_gradients_equal_the_full_batch(two_ranks):
    """Batch norm over (N, H, W) of conv features (a channel mean far from 0) on 2 ranks: the loss, every
    parameter gradient (the conv's flows back through the batch norm's input gradient) and the running variance
    equal one process's on the 7 images."""
    _, ranks = two_ranks
    loss, grads, running_var = _conv_loss_and_grads(_conv_net(), slice(0, GLOBAL))
    for found in ranks:
        torch.testing.assert_close(found["conv/loss"], loss, rtol=1e-5, atol=1e-6)
        for i, grad in enumerate(grads):
            torch.testing.assert_close(found[f"conv/grad{i}"], grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(found["conv/running_var"], running_var, rtol=1e-5, atol=1e-6)


def test_two_rank_checkpoint_matches_one_process_and_resumes(two_ranks, tmp_path, one_thread):
    """The worker's SimCLR run on 2 ranks (global batch 10) follows one process's loss curve; the checkpoint rank 0
    wrote after epoch 2 is resumed by one process for epoch 3, which ends where an unbroken 3-epoch run ends."""
    out, _ = two_ranks
    params = _params()
    encoder, head, _, _ = _models(params)
    kwargs = dict(batch_size=10, lr=0.01, weight_decay=params.train.weight_decay, temperature=0.5,
                  augment=params.train.augment.model_dump(), device=torch.device("cpu"), seed=params.seed)
    reference = train_contrastive(encoder, head, _images(), epochs=3, **kwargs)

    progress_file = tmp_path / "resume.safetensors"
    progress_file.write_bytes((out / "simclr.safetensors").read_bytes())
    resumed_encoder, resumed_head, _, _ = _models(params)
    progress = TrainingProgress(progress_file, "k", {"encoder": resumed_encoder, "head": resumed_head})
    assert progress.resumed and progress.start == 2
    two_workers = progress.history
    assert [h["workers"] for h in two_workers] == [2, 2]
    assert [h["trained"] for h in two_workers] == [h["trained"] for h in reference[:2]] == [20, 20]
    for mine, ref in zip(two_workers, reference[:2]):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-4)
    rest = train_contrastive(resumed_encoder, resumed_head, _images(), epochs=3, start_epoch=2,
                             optimizer_state=progress.optimizer_state(), **kwargs)
    assert rest[0]["loss"] == pytest.approx(reference[2]["loss"], rel=1e-4)
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(resumed_encoder.state_dict()[name], value, rtol=1e-3, atol=1e-5)


def test_acl_on_two_ranks_keeps_the_replicas_equal(two_ranks):
    """ACL (dual batch norm, both branches synchronised; PGD on the gathered loss) for one epoch: both ranks end
    with the same weights and running statistics (each rank drew its own PGD start, so only the gradient
    averaging and the synchronised batch norms can keep them equal), which rank 0 checkpointed; the adv branch's
    statistics moved."""
    out, ranks = two_ranks
    weights = [{k[4:]: v for k, v in r.items() if k.startswith("acl/")} for r in ranks]
    assert weights[0] and weights[0].keys() == weights[1].keys()
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=1e-5, atol=1e-6)
    tensors, meta = load_tensors(out / "acl.safetensors")
    assert meta["epoch"] == 1 and meta["history"][0]["workers"] == 2
    assert torch.isfinite(torch.tensor(meta["history"][0]["loss"]))
    encoder, _, _, _ = _models(_params("acl"))
    assert any(isinstance(m, DualBatchNorm) for m in encoder.modules())
    start = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.load_state_dict({k[len("encoder/"):]: v for k, v in tensors.items() if k.startswith("encoder/")})
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(value, weights[0][name])
    moved = [k for k, v in encoder.state_dict().items() if "running_mean" in k and not torch.equal(v, start[k])]
    assert any(".adv." in k for k in moved)


def test_gpu_check_data_parallel_step_runs_on_cpu(one_thread):
    """benchmarks/gpu_check's data-parallel step (DDP + gather on a 1-process group) on gloo: the first step's loss
    and gradients equal the plain step's (on a GPU machine the same function runs with NCCL)."""
    from benchmarks.gpu_check import data_parallel_step

    row = data_parallel_step(torch.device("cpu"), steps=1, batch=16)
    assert row["loss data-parallel"] == pytest.approx(row["loss plain"], rel=1e-6)
    assert row["grad rel diff"] < 1e-5
