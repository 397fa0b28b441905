"""Data-parallel training across processes (``torchrun``), and the same calls in one process.

    torchrun --nproc_per_node=N -m ros2_ttvos.train --config C [--resume]

Every rank draws its own clips (the batches depend on the rank), DistributedDataParallel
averages the gradients (gloo on the CPU, nccl on CUDA), and rank 0 alone writes checkpoints and
logs and scores the hold-out. Decisions that end a run (a signal, a deadline) are agreed on by
all ranks at every step, so that none waits for the others at a collective that never comes.
Without ``torchrun`` (no ``WORLD_SIZE``) everything here is the single-process no-op.
"""

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> Ranks:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))  # a hold-out check takes minutes
        LOG.info("rank %d of %d joined (%s)", ranks.rank, world, backend)
    return ranks


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """Each rank on its own GPU; on the CPU all share it."""
    return torch.device("cuda", ranks.local) if device.type == "cuda" and ranks.world > 1 else device


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on at least one."""
    if ranks.world <= 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier(ranks: Ranks) -> None:
    """Wait until every rank is here."""
    if ranks.world > 1:
        dist.barrier()


def weights_digest(model: torch.nn.Module) -> torch.Tensor:
    """Two numbers that differ when the weights do: their sum and a position-weighted sum."""
    total = torch.zeros(2, dtype=torch.float64)
    for index, value in enumerate(model.state_dict().values()):
        if value.is_floating_point():
            flat = value.detach().double().flatten().cpu()
            total[0] += flat.sum()
            total[1] += (flat * torch.arange(1, flat.numel() + 1, dtype=torch.float64)).sum() * (index + 1)
    return total


def check_ranks_agree(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> None:
    """Take rank 0's buffers (BatchNorm statistics follow each rank's own batch; DDP hands rank
    0's to all at every forward), then raise on every rank when the ranks' weights differ (the
    parameters must stay identical: the same averaged gradients, the same optimiser)."""
    if ranks.world <= 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
    digest = weights_digest(model).to(device)
    gathered = [torch.zeros_like(digest) for _ in range(ranks.world)]
    dist.all_gather(gathered, digest)
    if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
        raise RuntimeError(f"the {ranks.world} ranks' weights differ: {[g.tolist() for g in gathered]}")
    if ranks.main:
        LOG.info("%d ranks hold identical weights (digest %.6e)", ranks.world, float(gathered[0][1]))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
