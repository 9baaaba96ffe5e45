"""Process-group set-up for training: torchrun/srun environment in, DeepSpeed's comm up."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def set_accelerator_env() -> None:
    """DeepSpeed picks its accelerator at import time; on a machine without CUDA it must be cpu."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def cuda_device_index(local_rank: int, visible_devices: int) -> int:
    """This rank's GPU: local rank modulo the visible devices, so a cluster that binds one GPU
    per task (each rank sees only `cuda:0`) and one that shows all GPUs to every rank both work."""
    if visible_devices < 1:
        raise RuntimeError(f"local rank {local_rank}: CUDA is available but no device is visible")
    return local_rank % visible_devices


def init_distributed(num_threads: int | None = None) -> DistInfo:
    """Join the process group that torchrun (or srun) described, or make a group of one."""
    set_accelerator_env()
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        device, backend = torch.device("cuda", cuda_device_index(local_rank, torch.cuda.device_count())), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
        cores = os.cpu_count() or 1
        torch.set_num_threads(num_threads or max(1, cores // local_world_size))
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return DistInfo(rank, world_size, local_rank, local_world_size, device)


def all_reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sums over all ranks, in one collective (float64)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [float(value) for value in values]
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
