"""Data-parallel training pieces every family's training loop can use (torch alone, tensors in and out): this
process's slice of a global batch, an all-gather that keeps the gradient of the local slice, batch norm whose
statistics cover the global batch, and gradient averaging.

Convention (what makes W workers train exactly like one process on the whole global batch): every worker
computes the *same* global-batch loss L from gathered tensors, so the objective backpropagated across the
group is the sum of the workers' losses, W·L. Each collective's backward sums the incoming gradients over the
workers (the gradient of that sum), so worker r's parameter gradient is W times the part of dL/dθ that flows
through its own samples; :func:`average_gradients` sums those parts and divides by W, which gives dL/dθ.

Every function here is the identity (or a no-op) when no process group is initialised or it has one member,
so the one-process path runs the same code unchanged.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["world", "local_slice", "gather_with_grad", "all_reduce_with_grad", "GroupBatchNorm", "sync_batch_norm",
           "broadcast_module", "average_gradients", "any_rank"]


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_slice(n: int, rank: int | None = None, size: int | None = None) -> slice:
    """This rank's contiguous share of ``n`` items of a global batch: ``torch.tensor_split``'s split, so shares
    differ by at most one item and, concatenated in rank order, give the batch back in its order."""
    if rank is None or size is None:
        rank, size = world()
    base, rest = divmod(n, size)
    start = rank * base + min(rank, rest)
    return slice(start, start + base + (1 if rank < rest else 0))


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of (n_r, ...) slices of possibly different lengths into the (Σ n_r, ...) global tensor.
    Backward: the incoming gradients summed over ranks (the gradient of the sum of the ranks' losses), cut
    back to this rank's rows."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        rank, size = world()
        counts = torch.zeros(size, dtype=torch.long, device=local.device)
        counts[rank] = local.shape[0]
        dist.all_reduce(counts)
        longest = int(counts.max())
        padded = local.new_zeros((longest, *local.shape[1:]))
        padded[:local.shape[0]] = local
        pieces = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(pieces, padded.contiguous())
        sizes = counts.tolist()
        ctx.rows = (sum(sizes[:rank]), sum(sizes[:rank + 1]))
        return torch.cat([p[:k] for p, k in zip(pieces, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rows[0]:ctx.rows[1]]


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """The global batch (rank order) from every rank's ``local`` (n_r, ...) slice, differentiable with respect
    to the local slice (other ranks' rows are constants here; their gradients flow on their own ranks). Use it
    on projections before a contrastive loss so that the negatives are the whole global batch."""
    if world()[1] == 1:
        return local
    return _GatherWithGrad.apply(local)


class _AllReduceWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        out = local.contiguous().clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_with_grad(local: torch.Tensor) -> torch.Tensor:
    """Sum of ``local`` over ranks, differentiable (backward sums the gradients over ranks, see the module
    docstring); the identity without a group."""
    if world()[1] == 1:
        return local
    return _AllReduceWithGrad.apply(local)


class _GroupBatchNormFunction(torch.autograd.Function):
    """Training-mode batch norm with the group's statistics, on torch's per-channel batch-norm kernels (the
    ``torch.batch_norm_*`` collectives' helpers SyncBatchNorm uses exist for CUDA only). Forward: this rank's
    (mean, biased variance) from the batch-norm statistics kernel, combined with the other ranks' in one
    all-reduce (float64), then the fused eval-mode batch norm with them. Backward: this rank's Σ dy and Σ dy·x̂
    (the bias and weight gradients) from the batch-norm backward's reduction alone, one all-reduce of those
    sums, then dx = γ·σ⁻¹·(dy − mean(dy) − x̂·mean(dy·x̂)), means over the global batch, written as
    dx = a·dy + (b·x + c) with per-channel a, b, c: the fused eval-mode batch norm (mean 0, variance 1, eps 0)
    computes b·x + c in one pass and an in-place multiply-add adds a·dy. Why these kernels: a generic
    ``var_mean`` over dims (0, 2, 3) and an unfused correction with three temporaries made this about twice
    as costly in CPU as torch's own training-mode batch norm (benchmarks/dp_step.py measures the step)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        mean_l, var_l = torch.batch_norm_update_stats(x, None, None, 0.0)
        count = x.numel() // x.shape[1]
        stats = torch.cat([mean_l.double() * count, (var_l.double() + mean_l.double() ** 2) * count,
                           x.new_tensor([count], dtype=torch.float64)])
        dist.all_reduce(stats)
        channels = x.shape[1]
        n = stats[-1]
        mean64 = stats[:channels] / n
        var64 = (stats[channels:2 * channels] / n - mean64 ** 2).clamp(min=0)
        mean, var = mean64.to(x.dtype), var64.to(x.dtype)
        out = torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, False)
        ctx.save_for_backward(x, weight, mean, var)
        ctx.eps, ctx.n = eps, float(n)
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var, n

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _mean, _var, _n):
        x, weight, mean, var = ctx.saved_tensors
        grad = grad.contiguous()
        _, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, mean, var, None, None, False, ctx.eps, [False, True, True])
        sums = torch.cat([grad_bias, grad_weight])
        dist.all_reduce(sums)
        channels = x.shape[1]
        invstd = torch.rsqrt(var + ctx.eps)
        scale = weight * invstd
        slope = -scale * invstd * sums[channels:] / ctx.n
        offset = -scale * sums[:channels] / ctx.n - slope * mean
        dx = torch.batch_norm(x, slope, offset, torch.zeros_like(mean), torch.ones_like(var), False, 0.0, 0.0, False)
        dx.addcmul_(grad, scale.view([1, channels] + [1] * (x.dim() - 2)))
        return dx, grad_weight, grad_bias, None


class GroupBatchNorm(_BatchNorm):
    """Batch norm whose training-mode statistics are those of the global batch (every rank's slice), on any
    device and backend (gloo included): what ``nn.SyncBatchNorm`` does on GPUs, which refuses CPU tensors.
    One all-reduce forward and one backward per call (half what autograd through all-reduced sums needs), on
    torch's fused batch-norm kernels. Running statistics as ``nn.BatchNorm*`` keeps
    them (unbiased variance). Eval mode, or no group: plain batch norm. The state dict has the same keys as
    ``nn.BatchNorm*``, so checkpoints do not change. Needs affine parameters (every batch norm here has them)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {x.dim()}-D")
        if not self.affine:
            raise ValueError("GroupBatchNorm needs affine=True (weight and bias)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or world()[1] == 1:
            return super().forward(x)
        out, mean, var, n = _GroupBatchNormFunction.apply(x, self.weight, self.bias, self.eps)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * (n / max(float(n) - 1, 1.0)).to(var.dtype), momentum)
        return out


def sync_batch_norm(module: nn.Module, device: torch.device | str) -> nn.Module:
    """``module`` with every batch norm (dual-BN branches included: they are plain batch norms inside) made to
    normalise over the global batch: ``nn.SyncBatchNorm`` on CUDA (NCCL), :class:`GroupBatchNorm` elsewhere.
    Parameters and buffers are kept (same state-dict keys); returns the converted module (the root itself is
    replaced when it is a batch norm)."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, _BatchNorm) and not isinstance(module, GroupBatchNorm):
        new = GroupBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new.to(next(module.buffers()).device) if any(True for _ in module.buffers()) else new
    for name, child in module.named_children():
        setattr(module, name, sync_batch_norm(child, device))
    return module


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (identical starts, whatever each
    rank loaded)."""
    if world()[1] == 1:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src)


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average every parameter's gradient over the ranks in one flat all-reduce (a missing gradient counts as
    zero, so ranks always agree on the buffer's layout). With :func:`gather_with_grad` losses this leaves the
    gradient of the global-batch loss on every rank (module docstring). Why not DDP: the loops call the encoder
    several times per step (two views, ACL's clean and adversarial branches) and switch batch-norm branches
    between calls, which DDP's one-forward-one-backward hooks do not follow."""
    if world()[1] == 1:
        return
    params = [p for p in params if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world()[1]
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on any (a stop decision all ranks must take together)."""
    if world()[1] == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())

