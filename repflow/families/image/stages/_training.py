"""What the select and train stages share: the training images, the encoder + head they start from, the
adversary (ACL / DynACL), resumable training states, and one coreset selection under the params.

Not a stage: ``select`` (warm-up + first coreset) and ``train`` (coreset epochs with re-selection)
both call these so that the two halves of one schedule cannot drift apart.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repflow.families.image.models import build_encoder
from repflow.checkpoints import (CheckpointError, flatten_optimizer, load_state_strict, load_tensors, save_progress,
                                 save_tensors, unflatten_optimizer)
from repflow.cluster import ensure_ray, ray_resources
from repflow.config import Params
from repflow.data_parallel import broadcast_module, sync_batch_norm, world
from repflow.families.image.contrastive import Adversary, train_contrastive
from repflow.families.image.train_methods import build_training_head, load_training_head
from repflow.families.image.coreset import Coreset, candidate_batches, candidate_gradients, coreset_budget
from repflow.manifest import OutputError
from repflow.shards import ShardSet


def training_set(params: Params, data: ShardSet, views: Path | None):
    """(images, partners or None, labels or None) for the configured method, data and loss."""
    cfg = params.train
    latent_views = cfg.training_method.latent_views
    parts = []
    if cfg.data in ("real", "both"):
        x, y = data.load("train")
        parts.append((x, x.unsqueeze(1), y))
    if cfg.data in ("generated", "both"):
        gen = ShardSet(views)
        if tuple(gen.shape) != tuple(data.shape) or gen.num_classes != data.num_classes:
            raise OutputError(f"{views}: generated views have shape {gen.shape} and {gen.num_classes} classes, "
                              f"the real shards {data.shape} and {data.num_classes}")
        xg, yg = gen.load("views")
        k1 = gen.meta["views"]["k"] + 1
        grouped, labels = xg.view(-1, k1, *xg.shape[1:]), yg.view(-1, k1)[:, 0]
        anchors = grouped[:, 0]
        partners = grouped[:, 1:] if latent_views else anchors.unsqueeze(1)
        parts.append((anchors, partners, labels))
    if len(parts) == 2 and parts[0][1].shape[1] != parts[1][1].shape[1]:  # real images: partners = themselves
        k = parts[1][1].shape[1]
        parts[0] = (parts[0][0], parts[0][1].expand(-1, k, *parts[0][1].shape[2:]), parts[0][2])
    images = torch.cat([p[0] for p in parts])
    partners = torch.cat([p[1] for p in parts])
    labels = torch.cat([p[2] for p in parts])
    return images, (None if not latent_views and cfg.data == "real" else partners), labels


def streams(params: Params) -> bool:
    """Whether the select and train stages read the training split batch by batch (``train.stream``): real
    data, and a selection that keeps every image. Generated views stay in memory (an anchor and its K views
    are consecutive samples a shuffle buffer would separate; their number is the generate stage's
    ``anchors × (K + 1)``, set by the user), and so does the training set of a coreset method (selection
    scores and indexes every image) and of data-parallel workers (``train.workers > 1``: the stream splits by
    rank, each worker needs every global batch)."""
    cfg = params.train
    return (cfg.stream != "never" and cfg.data == "real" and not params.select.selection_method.subset
            and cfg.workers == 1)


class ShardImages:
    """The real training split as an :class:`~repflow.families.image.contrastive.ImageStream`: epoch e reads
    the shards in an order and through a shuffle buffer (``train.shuffle_buffer`` encoded samples; it fills
    before the first pick) both seeded from (seed, e), split by node (torch.distributed rank) and by loader
    worker. Memory: the buffer, one decoded batch and one shard's memory map or, for a remote folder, one
    shard's bytes — not the split.

    With a buffer at least the split's size the order is a uniform random permutation, like the in-memory
    path's ``torch.randperm`` but a different one, so the two paths give different batches from the same
    seed: benchmarks/results/stream.md measures what that changes. With a smaller buffer, samples move at
    most about a buffer's length from their place in the shards: prep writes the train split in a seeded
    random order, so a small buffer still mixes the classes; over shards written class by class (an
    ``imagefolder`` source in its own order) a buffer smaller than a class gives one-class batches.
    """

    def __init__(self, data: ShardSet, split: str, *, shuffle_buffer: int, seed: int, labels: bool = False,
                 workers: int = 0):
        self.data, self.split, self.shuffle_buffer, self.seed = data, split, shuffle_buffer, seed
        self.labels, self.workers = labels, workers

    def __len__(self) -> int:
        return self.data.count(self.split)

    def batches(self, epoch: int, batch_size: int, *, drop_last: bool):
        loader = self.data.loader(self.split, batch_size=batch_size, num_workers=self.workers,
                                  shuffle_buffer=self.shuffle_buffer, seed=self.seed * 100_003 + epoch,
                                  partial=not drop_last)
        for images, labels in loader:
            yield images, (labels if self.labels else None)

    def all_labels(self) -> torch.Tensor:
        """Every label of the split, in write order (int64 (N,)): a pass that decodes only the ``cls``
        members."""
        return self.data.labels(self.split)

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """The images at ``indices`` (positions in write order), uint8 (k,C,H,W) in the order given: one
        pass that keeps only those."""
        wanted = {int(i): j for j, i in enumerate(indices.tolist())}
        out = torch.empty((len(wanted), *self.data.shape), dtype=torch.uint8)
        for i, (image, _) in enumerate(self.data.dataset(self.split)):
            if i in wanted:
                out[wanted[i]] = image
        return out


def training_source(params: Params, data: ShardSet, views: Path | None):
    """(images, partners, labels) as :func:`training_set` gives them, or where :func:`streams` says so
    (ShardImages, None, None): the stream then carries the labels itself when the loss is SupCon."""
    if not streams(params):
        return training_set(params, data, views)
    cfg = params.train
    return ShardImages(data, "train", shuffle_buffer=cfg.shuffle_buffer, seed=params.seed,
                       labels=cfg.loss == "supcon"), None, None


def new_models(params: Params, data: ShardSet) -> tuple[nn.Module, nn.Module, dict, dict]:
    """(encoder, head, encoder config, head config), initialised from ``params.seed``. Adversarial methods
    get dual batch norm; the saved encoder answers with ``train.adversarial.inference_bn``. The head is
    :func:`repflow.families.image.contrastive.build_training_head`'s: a projection head, or a pretext method's
    decoder / generator + discriminator (its config then names the method under ``"pretext"``)."""
    cfg = params.train
    torch.manual_seed(params.seed)
    enc_config = {"name": cfg.encoder, "in_channels": data.shape[0], "width": cfg.width,
                  "mean": data.meta["mean"], "std": data.meta["std"], "input_shape": list(data.shape)}
    if cfg.adversarial_training:
        enc_config.update(dual_bn=True, bn_branch=cfg.adversarial.inference_bn)
    encoder = build_encoder(enc_config)
    head, head_config = build_training_head(cfg.method, encoder.out_dim, tuple(data.shape), proj_dim=cfg.proj_dim,
                                            dual_bn=cfg.adversarial_training)
    return encoder, head, enc_config, head_config


def adversary(params: Params) -> Adversary | None:
    """The training method's adversary built from ``train.adversarial``; None for a non-adversarial method."""
    cfg = params.train
    build = cfg.training_method.adversary
    return None if build is None else build(cfg.adversarial, cfg.epochs)


def save_training_state(path: Path, encoder: nn.Module, head: nn.Module, opt: torch.optim.Optimizer,
                        meta: dict[str, Any], extra: dict[str, torch.Tensor] | None = None) -> None:
    """Encoder, head and optimizer tensors in one safetensors file; ``meta`` (JSON) must hold ``epoch``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opt_tensors, opt_meta = flatten_optimizer(opt)
    tensors = {**{f"encoder/{k}": v for k, v in encoder.state_dict().items()},
               **{f"head/{k}": v for k, v in head.state_dict().items()}, **opt_tensors,
               **{f"extra/{k}": v.clone() for k, v in (extra or {}).items()}}
    save_tensors(path, tensors, {**meta, "optimizer": opt_meta})


def load_training_state(path: Path, encoder: nn.Module, head: nn.Module
                        ) -> tuple[dict[str, Any], dict, dict[str, torch.Tensor]]:
    """Load a :func:`save_training_state` file into ``encoder`` and ``head``; returns (meta, optimizer
    state dict, extra tensors). Raises CheckpointError naming the file when it does not fit."""
    tensors, meta = load_tensors(path)
    load_state_strict(encoder, {k[8:]: v for k, v in tensors.items() if k.startswith("encoder/")}, path)
    load_state_strict(head, {k[5:]: v for k, v in tensors.items() if k.startswith("head/")}, path)
    if "optimizer" not in meta or "epoch" not in meta:
        raise CheckpointError(f"{path}: not a training state (no optimizer or epoch in its config)")
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra/")}
    return meta, unflatten_optimizer(tensors, meta["optimizer"]), extra


def validation_indices(params: Params, n_images: int) -> torch.Tensor:
    """The unlabeled validation images U (indices into the training images), fixed by the seed."""
    size = params.select.val_size
    if size > n_images:
        raise ValueError(f"select.val_size = {size}: larger than the {n_images} training images")
    g = torch.Generator().manual_seed(params.seed * 7919 + 1)
    return torch.randperm(n_images, generator=g)[:size].sort().values


def check_schedule(params: Params, n_images: int) -> None:
    """Bad selection params against the actual data, before any training starts."""
    if not params.select.selection_method.subset:
        return
    try:
        coreset_budget(n_images, params.select.fraction)
    except ValueError as exc:
        raise ValueError(f"select.fraction = {params.select.fraction}: {exc}") from None
    validation_indices(params, n_images)


def _gradients_on_ray(params: Params, encoder, head, enc_config, head_config, images, batches, augment, adversarial,
                      seed, device) -> torch.Tensor:
    ray = ensure_ray()
    chunks = [list(range(i, len(batches), params.select.workers)) for i in range(params.select.workers)]
    state_ref = ray.put(({k: v.cpu() for k, v in encoder.state_dict().items()},
                         {k: v.cpu() for k, v in head.state_dict().items()}))
    images_ref = ray.put(images)
    job = ray.remote(candidate_gradients_job).options(**ray_resources(device))
    futures = [job.remote(enc_config, head_config, state_ref, images_ref, [batches[i] for i in ids], ids, augment,
                          params.train.temperature, adversarial, seed, device.type) for ids in chunks if ids]
    grads = torch.empty(len(batches), 0)
    for ids, rows in zip([c for c in chunks if c], ray.get(futures)):
        if grads.shape[1] == 0:
            grads = torch.empty(len(batches), rows.shape[1])
        grads[ids] = rows
    return grads


def candidate_gradients_job(enc_config: dict, head_config: dict, states: tuple[dict, dict], images: torch.Tensor,
                            batches: list[torch.Tensor], ids: list[int], augment: dict, temperature: float,
                            adversarial: dict | None, seed: int, device: str) -> torch.Tensor:
    """One Ray task: rebuild encoder + head from their configs and states, score a share of the candidates."""
    if device == "cpu":
        torch.set_num_threads(1)
    encoder = build_encoder(enc_config)
    head = load_training_head(head_config, states[1], "the projection head sent to this Ray task")
    encoder.load_state_dict(states[0])
    encoder.to(device).eval()
    head.to(device).eval()
    return candidate_gradients(encoder, head, images, batches, ids, augment=augment, temperature=temperature,
                               adversarial=adversarial, seed=seed, device=device,
                               desc=f"RCS candidates {ids[0]}..{ids[-1]}")


def choose_coreset(params: Params, encoder: nn.Module, head: nn.Module, enc_config: dict, head_config: dict,
                   images: torch.Tensor, *, epoch: int, device: torch.device) -> tuple[Coreset, float]:
    """One selection under ``params.select`` with the current model (left unchanged) at 0-based ``epoch``:
    (coreset, seconds). A method that keeps every image (``full``) takes no time."""
    cfg = params.select
    method = cfg.selection_method
    t0 = time.perf_counter()
    seed = params.seed * 1009 + epoch
    if not method.subset:
        return method.select(len(images), len(images), seed), 0.0
    budget = coreset_budget(len(images), cfg.fraction)
    if not method.scores_model:
        return method.select(len(images), budget, seed), time.perf_counter() - t0
    a = params.train.adversarial
    adversarial = {"eps": a.eps, "alpha": a.alpha, "steps": a.steps} if params.train.adversarial_training else None
    augment = params.train.augment.model_dump()
    was_training = encoder.training, head.training
    encoder.eval()
    head.eval()
    frozen = [p.requires_grad for p in encoder.parameters()]
    for p in encoder.parameters():
        p.requires_grad_(False)
    try:
        gradients = None
        if cfg.workers > 1:
            batches = candidate_batches(len(images), cfg.candidate_batch, seed)
            gradients = _gradients_on_ray(params, encoder, head, enc_config, head_config, images, batches, augment,
                                          adversarial, seed, device)
        val = images[validation_indices(params, len(images))]
        coreset = method.select(encoder, head, images, val, budget=budget, batch_size=cfg.candidate_batch,
                                augment=augment, temperature=params.train.temperature, adversarial=adversarial,
                                rd=cfg.rd, head_lr=cfg.head_lr, seed=seed, device=device, gradients=gradients)
    finally:
        for p, f in zip(encoder.parameters(), frozen):
            p.requires_grad_(f)
        encoder.train(was_training[0])
        head.train(was_training[1])
    return coreset, time.perf_counter() - t0


def data_parallel_train(job: dict[str, Any], device: torch.device) -> tuple[nn.Module, nn.Module]:
    """One Ray Train worker of ``train.workers > 1`` (:func:`repflow.cluster.run_data_parallel` calls it on every
    rank): rebuild the encoder + head from their configs and the driver's states (fresh from select, or resumed),
    synchronise their batch norms over the global batch (dual-BN ACL: both branches, each a batch norm), start
    every rank from rank 0's weights, and run :func:`train_contrastive` on the global batches
    (``train.batch_size``), each rank encoding its slice. Rank 0 alone writes the progress checkpoint, the same
    file, keys and meta as the one-process stage writes (so either can resume the other's), every
    ``train.checkpoint_every`` epochs and after the last; the driver reads the result from it.

    ``job``: params, key, progress (checkpoint path), enc_config, head_config, encoder / head (state dicts),
    optimizer (state dict or None), meta (epoch, history, rounds, selection_seconds, train_seconds), extra
    (coreset tensors), images, partners, labels (tensors or None). Returns this rank's (encoder, head), batch
    norms synchronised."""
    params, cfg = job["params"], job["params"].train
    encoder = build_encoder(job["enc_config"])
    encoder.load_state_dict(job["encoder"])
    head = load_training_head(job["head_config"], job["head"], "the projection head sent to this worker")
    encoder = sync_batch_norm(encoder, device).to(device)
    head = sync_batch_norm(head, device).to(device)
    broadcast_module(encoder)
    broadcast_module(head)
    rank, ranks = world()
    meta, extra = job["meta"], job["extra"]
    start_epoch, history = meta["epoch"], meta["history"]
    clock = {"start": time.perf_counter()}

    def on_epoch(epoch: int, stats: dict, opt) -> None:
        meta["train_seconds"] += time.perf_counter() - clock["start"]
        history.append({**stats, "workers": ranks})
        if rank == 0 and (epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs):
            save_progress(job["progress"], job["key"], {"encoder": encoder, "head": head}, {"model": opt},
                          {**meta, "epoch": epoch, "history": history}, extra)
        clock["start"] = time.perf_counter()

    coreset = extra["coreset"]
    train_contrastive(encoder, head, job["images"], epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                      weight_decay=cfg.weight_decay, temperature=cfg.temperature,
                      augment=cfg.augment.model_dump(), device=device, seed=params.seed,
                      partners=job["partners"], labels=job["labels"] if cfg.loss == "supcon" else None,
                      adversary=adversary(params), epoch_indices=lambda epoch: coreset,
                      optimizer_state=job["optimizer"], start_epoch=start_epoch, on_epoch=on_epoch)
    return encoder, head
