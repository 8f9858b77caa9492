"""Several processes, one run: torch.distributed as torchrun starts it (one process per rank).

A run under `torchrun` (or `python -m cnnviz train --nproc N`, which launches torchrun) finds
RANK / WORLD_SIZE / LOCAL_RANK in its environment. `Dist.from_env` joins the process group
(NCCL on CUDA, gloo on the CPU); a plain run gets `Dist()` (rank 0 of 1) and no group, so the
engine's steps are the same code for 1 and N ranks:

- data: every rank holds the whole dataset on its own device and takes `perm[rank::world]` of
  each epoch's permutation, in batches of batch_size / world, so the N ranks together see
  exactly the batches one process would (`shard`);
- sums (loss, correct, seen, the stop flag) are all-reduced (`sum_`), so what is logged is the
  global figure; rank 0 alone writes metrics.jsonl and checkpoints (`is_main`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a torchrun launch (WORLD_SIZE etc. set)."""
    return all(k in os.environ for k in ENV_KEYS)


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank r of world, and whether a process group exists."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    active: bool = False  # a process group was initialised (world > 1)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes metrics and checkpoints."""
        return self.rank == 0

    @classmethod
    def from_env(cls, device_type: str) -> "Dist":
        """Join torchrun's process group when launched by it (any WORLD_SIZE), else a single process."""
        if not launched_by_torchrun():
            return cls()
        rank, world, local = (int(os.environ[k]) for k in ENV_KEYS)
        import torch.distributed as tdist  # (under torchrun even 1 rank takes the DDP path: --nproc 1)

        if not tdist.is_initialized():
            backend = "nccl" if device_type == "cuda" else "gloo"
            if device_type == "cuda":
                torch.cuda.set_device(local)
            tdist.init_process_group(backend=backend)
        return cls(rank=rank, world=world, local_rank=local, active=True)

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: cuda:LOCAL_RANK under a CUDA launch, else `device`."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def shard(self, batch_size: int) -> int:
        """This rank's share of the global batch (the global batch must divide evenly)."""
        if batch_size % self.world:
            raise ValueError(f"The batch size {batch_size} does not split evenly over {self.world} processes: "
                             f"use a multiple of {self.world}.")
        return batch_size // self.world

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) `t` in place across ranks; a no-op in a single process."""
        if self.active:
            import torch.distributed as tdist

            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def broadcast(self, obj):
        """Rank 0's value of a small picklable object (trusted: our own ranks), on every rank."""
        if not self.active:
            return obj
        import torch.distributed as tdist

        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as tdist

            tdist.barrier()

    def close(self) -> None:
        """Leave the process group (end of the run)."""
        if self.active:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.destroy_process_group()


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` (already on its device and memory format), or the model.

    On CUDA the BatchNorms become SyncBatchNorm first (statistics over the global batch); on the
    CPU/gloo path SyncBatchNorm cannot run, so each rank normalises over its own shard."""
    if not dist.active:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DDP(model, device_ids=[device.index])
    return DDP(model)
