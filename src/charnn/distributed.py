"""Training in several processes: which process this is, and the process group.

torchrun (torch.distributed's launcher) starts one process per GPU or per share of a CPU, on
one machine or several, and tells each its place through the environment: RANK (0 .. N-1),
WORLD_SIZE (N) and LOCAL_RANK (its number on its machine), MASTER_ADDR and MASTER_PORT (where
the processes meet). charnn reads them here, without importing PyTorch, so that the command
line can decide who writes the run folder (rank 0 alone) before anything is trained; the
process group itself is opened by the torch backend (backends/pytorch.py) when training starts.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_writer() -> bool:
    """Whether this process writes the run folder, the log and the console: rank 0."""
    return rank() == 0


def init_process_group(device_type: str):
    """Join the processes torchrun started (NCCL between GPUs, gloo between CPUs); None
    when this is the only process. Returns the group, or None when it was already open."""
    if world_size() == 1:
        return None
    import torch.distributed as dist
    if dist.is_initialized():
        return None
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return dist.group.WORLD


def destroy_process_group(group) -> None:
    """Leave the group that init_process_group opened (nothing for None)."""
    if group is None:
        return
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()


class NoFolder:
    """What a process other than rank 0 has in place of the run folder: the same calls,
    writing nothing, so that one process alone writes the log, samples and checkpoints."""

    def __init__(self, path):
        from pathlib import Path
        self.path = Path(path)

    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def start(self, config_doc: dict) -> None: ...
    def resume(self, iteration: int, config_doc: dict) -> None: ...
    def write_config(self, config_doc: dict) -> None: ...
    def append_log(self, row: dict) -> None: ...
    def append_sample(self, iteration: int, epoch: int, smooth_loss: float, text: str) -> None: ...
