"""What a run saves to continue exactly where it stopped, and reading it back (`engine.fit(resume=...)`).

`last-state.pt` holds the optimizer, the RNG states, the progress (epochs done, global step, time) and,
when the run stopped inside an epoch, its `EpochPosition`: how many batches of that epoch's
permutation it had trained, the augmentation generator's state at that point and the epoch's partial
sums. The permutation itself is not saved: it is drawn again from the run's seed and the epoch
number. A resume skips those batches, restores the generator and the sums, and carries on, so a run
stopped (or killed after a checkpoint) and resumed trains exactly the steps, with exactly the
schedule, that it would have trained without the interruption: same weights, same metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..runs import layout
from ..runs.store import read_run
from ..runs.writer import write_state


@dataclass
class EpochPosition:
    """Where inside an epoch a stopped run was: it had trained batches [0, batch) of `epoch`."""

    epoch: int
    batch: int
    batch_size: int
    aug_gen: torch.Tensor        # the augmentation generator's state (a uint8 tensor)
    sums: torch.Tensor           # float64 [loss_sum, correct, seen, window loss, window count], all ranks

    def to_state(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "batch_size": self.batch_size,
                "aug_gen": self.aug_gen.cpu(), "sums": self.sums.cpu()}

    @classmethod
    def from_state(cls, d: dict | None, batch_size: int, notes: list[str]) -> "EpochPosition | None":
        """The saved position, or None (no position saved, or one that does not fit this config: then
        the stopped epoch is trained again from its start, and a note says so)."""
        if not isinstance(d, dict) or not d.get("batch"):
            return None
        if int(d.get("batch_size", 0)) != batch_size:
            notes.append(f"the batch size changed ({d.get('batch_size')} -> {batch_size}): epoch {d.get('epoch')} "
                         "starts again from its first batch")
            return None
        return cls(int(d["epoch"]), int(d["batch"]), batch_size, d["aug_gen"], d["sums"].to(torch.float64))


def save_state(run_dir: Path, opt: torch.optim.Optimizer, state: dict, device: torch.device,
               position: EpochPosition | None = None) -> None:
    """Write last-state.pt: optimizer, RNG states, progress and (inside an epoch) the position."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    write_state(run_dir, {"optimizer": opt.state_dict(), "rng": rng, **state,
                          "position": None if position is None else position.to_state()})


def restore_rng(prev_state: dict, device: torch.device) -> None:
    """Put back the global RNG states a run saved (CPU, and the run's CUDA device)."""
    rng = prev_state.get("rng") or {}
    if isinstance(rng.get("torch"), torch.Tensor):
        torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and isinstance(rng.get("cuda"), torch.Tensor):
        torch.cuda.set_rng_state(rng["cuda"], device)


def resume_state(cfg, run_dir: Path):
    """(saved state, None) or (None, (message, advice)) for resuming the run in `run_dir` with `cfg`."""
    try:
        saved = read_run(run_dir)
    except FileNotFoundError as exc:
        return None, (str(exc), "Pick an existing run to resume.")
    for key in ("model", "dataset"):
        if saved.config.get(key) not in (None, getattr(cfg, key)):
            return None, (f"Cannot resume: the run used {key}={saved.config.get(key)!r}, not {getattr(cfg, key)!r}.",
                          "Resume with the run's config.")
    if saved.last_checkpoint is None or not (run_dir / layout.LAST_STATE).is_file():
        return None, (f"Run {run_dir.name} has no checkpoint to resume from.", "Start a new run instead.")
    try:
        return torch.load(run_dir / layout.LAST_STATE, map_location="cpu", weights_only=True), None
    except Exception as exc:  # noqa: BLE001 - any unreadable state: say so
        return None, (f"Cannot read {layout.LAST_STATE}: {exc}", "Start a new run.")
