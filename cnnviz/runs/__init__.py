"""The run store: everything about a training run on disk, in one place.

Modules:
- `layout`: the run directory's files, the runs root, unique run ids, stop requests, checkpoint
  files, small JSON helpers (no torch).
- `status_type`: `Status`, the one status type (queued, starting, running, finished, stopped, pruned,
  diverged, error, interrupted).
- `liveness`: pids with start times (a reused pid is not a run's).
- `executor`: the seam a queued run is started through (`Executor`: start, alive, stop, why_ended);
  `LocalExecutor` runs it as a process of this machine with a memory limit; `ray_executor`
  (`CNNVIZ_EXECUTOR=ray`, imported only then) submits it as a job of a Ray cluster.
- `status`: `decide`, the one rule that turns what a run wrote and what is alive into a status.
- `reader`: `MetricsReader`, the one (incremental) reader of metrics.jsonl; `StepSeries`, a bounded
  min/max-preserving step series.
- `store`: `RunSnapshot`, `list_runs` (from each run's summary.json), `snapshot` (cached incremental
  reads), `read_run` (a fresh full read).
- `writer`: `RunWriter` (metrics.jsonl + summary.json, as the engine trains), `write_state`.
- `queue`: the persistent queue (submit, submit_many, dispatch, cancel, positions), which cannot wedge.
- `quotas`: per-visitor limits on what a browser can queue (`Limits`, `LimitError`).
- `sweeps`: grids of runs sharing a sweep id, and their comparison table.
- `search`, `search_space`: Optuna searches (a study per sweep; ask-and-tell, pruning through the stop
  file) and the ranges/choices they vary.
- `model`: `load_model`, a run's weights at a saved epoch.
- `manage`: deleting a run (confined to the runs root, refusing live runs), its checkpoint and script
  for download; each takes the acting user.
- `access`: who may manage a run (its owner and the admins; `NotAllowed` for anyone else).
- `limits`: per-user limits (queued, running at once, epochs, sweep size, images, storage) and quotas.
- `fair`: the queue's round-robin order across owners.
- `usage`: the class board (finished runs ranked per dataset) and per-user usage for the teacher view.
"""

from .layout import (CONFIG_FILE, GATE_FILE, LAST_STATE, LAST_WEIGHTS, LAUNCHER_FILE, LOG_FILE, METRICS_FILE,
                     PID_FILE, STOP_FILE, SUMMARY_FILE, SWEEP_FILE, epoch_checkpoint_name, request_stop, run_dirs,
                     runs_root)
from .access import NotAllowed
from .manage import delete_run
from .status_type import Status
from .store import RunSnapshot, list_runs, read_run, snapshot, summary

__all__ = ["CONFIG_FILE", "GATE_FILE", "LAST_STATE", "LAST_WEIGHTS", "LAUNCHER_FILE", "LOG_FILE", "METRICS_FILE",
           "PID_FILE", "STOP_FILE", "SUMMARY_FILE", "SWEEP_FILE",
           "epoch_checkpoint_name", "request_stop", "run_dirs", "runs_root", "delete_run", "NotAllowed", "Status",
           "RunSnapshot", "list_runs", "read_run", "snapshot", "summary"]
