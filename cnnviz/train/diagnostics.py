"""What the training engine tells the user about the machine and about what went wrong: the memory
line a live view shows, and one-line advice for an out-of-memory error or a diverged loss."""

from __future__ import annotations

import os

import torch

from .config import TrainConfig


def memory_usage(device: torch.device) -> str:
    """A short line: CUDA memory allocated/peak, or this process's resident memory."""
    if device.type == "cuda":
        return (f"{torch.cuda.memory_allocated(device) / 2**20:.0f} MiB allocated "
                f"(peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB)")
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return f"{int(line.split()[1]) / 1024:.0f} MiB resident (process)"
    except OSError:
        pass
    import resource

    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak resident (process)"


def advice_oom(cfg: TrainConfig) -> str:
    return (f"The device ran out of memory at batch size {cfg.batch_size}: try {max(1, cfg.batch_size // 2)} "
            "or smaller, a smaller model, or precision bf16. The app keeps running.")


def advice_diverged(cfg: TrainConfig) -> str:
    tips = [f"lower the learning rate (now {cfg.lr:g}; try {cfg.lr / 10:g})"]
    if cfg.optimizer == "sgd":
        tips.append("or use adam")
    if cfg.schedule == "constant":
        tips.append("or a onecycle schedule (it warms up)")
    if cfg.precision == "bf16":
        tips.append("or precision fp32")
    return "The loss became NaN/inf: " + ", ".join(tips) + "."


def host_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is the host running out of memory (or the run process reaching its memory limit)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "not enough memory" in text or "std::bad_alloc" in text))


def oom_message() -> str:
    limit = os.environ.get("CNNVIZ_RUN_MEMORY_LIMIT")
    within = f" (the run's limit is {int(limit) / 2**20:,.0f} MB, CNNVIZ_RUN_MEMORY_MB)" if limit else ""
    return f"out of memory: this run needed more memory than it had{within}."
