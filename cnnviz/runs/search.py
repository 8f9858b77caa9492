"""Search sweeps: Optuna's sampler picks each next run's settings, its pruner stops the runs that are behind.

    sweep_id = create({"lr": "1e-4:1e-1:log", "batch_size": "64,128"}, base={"epochs": 6, "dataset": "digits"},
                      sampler="tpe", trials=16, parallel=2, pruner="median", seed=0)
    advance(sweep_id)     # idempotent and cheap: report epochs, prune, tell ended trials, ask new ones
    state(sweep_id)       # the trials (settings, scores per epoch, outcome, run), the best, complete or not
    extend(sweep_id, 4)   # "continue this search": four more trials

One Optuna study per sweep, named by the sweep id, in `<runs>/.studies/<sweep id>.journal` (Optuna's
JournalStorage, file backend), or in the database named by $CNNVIZ_OPTUNA_STORAGE (an SQLAlchemy URL,
e.g. postgresql://...) when it is set at creation. The search's own settings (space, sampler, pruner,
trial counts, base config) are `<runs>/.studies/<sweep id>.json`.

Trials are ordinary runs, queued through `cnnviz.runs.queue` (owner, the concurrency cap and queue
order apply), each with a sweep.json {"sweep_id", "params", "trial", "search": true}; at most
`parallel` of them are queued or training at once, `trials` are asked in all. Nothing here waits for a
run: `advance` looks at what the runs wrote and acts, so any process may drive a search. A search's
trial process calls it at each epoch end and as it exits (cnnviz/cli.py), `sweep --search` calls it in
a loop, the Train and Runs pages call it as they refresh, and a file lock (`<sweep id>.lock`, fcntl)
makes sure two drivers never ask for the same trial twice.

How a run's end is told to the study: finished -> COMPLETE with its last epoch's test accuracy;
pruned, stopped by a user or diverged after at least one epoch -> PRUNED (its epoch scores count, as
Optuna counts a pruned trial's); error, interrupted (SIGKILL, out-of-memory kill), deleted, or
diverged before an epoch -> FAIL. A trial told once stays told: a pruned run resumed by hand shows its
new scores on the pages, the study keeps it as pruned.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..train.config import PRESETS, TrainConfig, preset_config
from . import queue
from .layout import PRUNE, is_run_dir, read_json, request_stop, root_of, run_dirs, sweep_of, write_json
from .search_space import Dimension, corners, parse_space
from .status_type import Status
from .store import snapshot, summary
from .sweeps import new_sweep_id

STUDIES_DIR = ".studies"
SPEC_VERSION = 1
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "asha", "hyperband", "none")
MAX_TRIALS = 1000
MAX_PARALLEL = 64
STORAGE_ENV = "CNNVIZ_OPTUNA_STORAGE"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# how a run's status is told to the study (runs with no epoch score are FAIL whatever their status)
TOLD_AS = {Status.FINISHED: "complete", Status.PRUNED: "pruned", Status.STOPPED: "pruned",
           Status.DIVERGED: "pruned", Status.ERROR: "fail", Status.INTERRUPTED: "fail"}


# ---------------------------------------------------------------- files
def studies_dir(root: Path | None = None) -> Path:
    return root_of(root) / STUDIES_DIR


def _check_id(sweep_id: str) -> str:
    if not isinstance(sweep_id, str) or not ID_RE.match(sweep_id):
        raise ValueError(f"{sweep_id!r} is not a sweep id.")
    return sweep_id


def spec_path(sweep_id: str, root: Path | None = None) -> Path:
    return studies_dir(root) / f"{_check_id(sweep_id)}.json"


def journal_path(sweep_id: str, root: Path | None = None) -> Path:
    return studies_dir(root) / f"{_check_id(sweep_id)}.journal"


def is_search(sweep_id: str, root: Path | None = None) -> bool:
    """Whether `sweep_id` is a search (it has a search spec), not a grid."""
    try:
        return spec_path(sweep_id, root).is_file()
    except ValueError:
        return False


def search_ids(root: Path | None = None) -> list[str]:
    """The searches under the runs root, newest first."""
    d = studies_dir(root)
    return sorted((p.stem for p in d.glob("*.json") if ID_RE.match(p.stem)), reverse=True) if d.is_dir() else []


def load_spec(sweep_id: str, root: Path | None = None) -> dict:
    spec = read_json(spec_path(sweep_id, root))
    if not isinstance(spec, dict) or spec.get("version") != SPEC_VERSION:
        raise ValueError(f"No search {sweep_id!r} under {root_of(root)} (no readable {STUDIES_DIR}/{sweep_id}.json).")
    return spec


def dimensions(spec: dict) -> dict[str, Dimension]:
    return {name: Dimension.from_json(d) for name, d in spec["space"].items()}


@contextlib.contextmanager
def _locked(sweep_id: str, root: Path | None, wait: bool = True):
    """The search's driver lock (yields False when `wait` is off and another process holds it)."""
    import fcntl

    d = studies_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{_check_id(sweep_id)}.lock", "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------- Optuna objects
def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _storage(spec: dict, root: Path | None):
    optuna = _optuna()
    if spec.get("storage") == "database":
        url = os.environ.get(STORAGE_ENV, "").strip()
        if not url:
            raise ValueError(f"Search {spec['sweep_id']}'s study is in the database named by {STORAGE_ENV}, "
                             "which is not set here.")
        return optuna.storages.RDBStorage(url)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(journal_path(spec["sweep_id"], root))))


def _sampler(spec: dict, n_asked: int):
    """The sampler for the trial asked after `n_asked` others: seeded by the search's seed and that count,
    so a search made again with the same seed asks the same first trials, whoever drives it."""
    optuna = _optuna()
    seed = (int(spec["seed"]) * 1_000_003 + n_asked) % 2**32
    if spec["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(spec["tpe_startup"]),
                                      constant_liar=int(spec["parallel"]) > 1)


def _pruner(spec: dict):
    optuna = _optuna()
    kind, epochs = spec["pruner"], int(spec["base"].get("epochs") or 1)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(spec["prune_startup"]), n_warmup_steps=0)
    if kind == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


def load_study(sweep_id: str, root: Path | None = None, spec: dict | None = None):
    """The search's Optuna study (from its journal or database)."""
    spec = spec or load_spec(sweep_id, root)
    optuna = _optuna()
    return optuna.load_study(study_name=sweep_id, storage=_storage(spec, root), sampler=_sampler(spec, 0),
                             pruner=_pruner(spec))


# ---------------------------------------------------------------- making one
def default_startup(trials: int, cap: int) -> int:
    """Trials before TPE models (cap 10) or the median pruner acts (cap 5): a quarter, at least 2."""
    return min(cap, max(2, trials // 4))


def create(space: dict[str, Any], base: dict[str, Any] | None = None, *, sampler: str = "tpe", trials: int = 16,
           parallel: int = 1, pruner: str = "median", seed: int | None = None, preset: str | None = None,
           prune_startup: int | None = None, tpe_startup: int | None = None, enqueue: list[dict] | None = None,
           nproc: int | None = None, owner: str | None = None, root: Path | None = None, start: bool = True) -> str:
    """Make a search (ValueError, one line, nothing queued, on bad input) and, with `start`, queue its first
    trials. `space`: {field: "low:high[:log]" | "a,b,c" | [values] | single value (a setting)}; `base`: the
    other settings (a `preset` first); `seed`: the sampler's (default: the runs' seed); `enqueue`: settings
    to try first (Optuna's enqueue_trial), each inside the space. Returns the sweep id."""
    root = root_of(root)
    spec = _new_spec(space, base, sampler=sampler, trials=trials, parallel=parallel, pruner=pruner, seed=seed,
                     preset=preset, prune_startup=prune_startup, tpe_startup=tpe_startup, nproc=nproc, owner=owner)
    dims = dimensions(spec)
    for params in enqueue or []:
        bad = [k for k, v in params.items() if k not in dims or not dims[k].contains(v)]
        if bad or not params:
            raise ValueError(f"Settings to try first must lie inside the search space: {params!r}.")
    optuna = _optuna()
    studies_dir(root).mkdir(parents=True, exist_ok=True)
    storage = _storage(spec, root)
    study = optuna.create_study(study_name=spec["sweep_id"], storage=storage, direction="maximize",
                                sampler=_sampler(spec, 0), pruner=_pruner(spec))
    for params in enqueue or []:
        study.enqueue_trial(params)
    write_json(spec_path(spec["sweep_id"], root), spec)
    if start:
        advance(spec["sweep_id"], root)
    return spec["sweep_id"]


def _new_spec(space, base, *, sampler, trials, parallel, pruner, seed, preset, prune_startup, tpe_startup,
              nproc, owner) -> dict:
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler {sampler!r}; choose {', '.join(SAMPLERS)}.")
    if pruner not in PRUNERS:
        raise ValueError(f"Unknown pruner {pruner!r}; choose {', '.join(PRUNERS)}.")
    trials, parallel = _whole("trials", trials, 1, MAX_TRIALS), _whole("parallel", parallel, 1, MAX_PARALLEL)
    dims, fixed = parse_space(space)
    if not dims:
        raise ValueError("A search needs at least one range (low:high) or several choices (a,b,c) to vary.")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; known: {', '.join(PRESETS)}.")
    settings = {**(base or {}), **fixed}
    cfg = preset_config(preset, **settings) if preset else TrainConfig.from_dict(settings)
    cfg.validate()
    for corner in corners(dims):  # every end of every range, every choice: each must make a valid run
        try:
            TrainConfig.from_dict({**cfg.to_dict(), **corner}).validate()
        except ValueError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in corner.items())
            raise ValueError(f"The search space holds a run that can't train ({shown}): {exc}") from None
    if nproc is not None:
        nproc = _whole("nproc", nproc, 1, 64)
    seed = cfg.seed if seed is None else _whole("seed", seed, 0, 2**31 - 1)
    return {"version": SPEC_VERSION, "sweep_id": new_sweep_id().replace("sweep-", "search-", 1),
            "created": time.time(), "sampler": sampler, "pruner": pruner, "seed": seed, "trials": trials,
            "parallel": min(parallel, trials), "space": {n: d.to_json() for n, d in dims.items()},
            "base": cfg.to_dict(),
            "prune_startup": _whole("prune startup", prune_startup, 0, MAX_TRIALS) if prune_startup is not None
            else default_startup(trials, 5),
            "tpe_startup": _whole("TPE startup", tpe_startup, 1, MAX_TRIALS) if tpe_startup is not None
            else default_startup(trials, 10),
            "nproc": nproc, "owner": owner, "storage": "database" if os.environ.get(STORAGE_ENV, "").strip()
            else "journal", "complete": False}


def _whole(name: str, v: Any, low: int, high: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer():
        raise ValueError(f"{name} must be a whole number, not {v!r}.")
    if not low <= int(v) <= high:
        raise ValueError(f"{name} must be in {low}..{high:,}, not {int(v):,}.")
    return int(v)


def extend(sweep_id: str, more: int, root: Path | None = None, start: bool = True) -> int:
    """Continue a search: `more` trials beyond those it holds now; returns the new total."""
    more = _whole("more trials", more, 1, MAX_TRIALS)
    with _locked(sweep_id, root):
        spec = load_spec(sweep_id, root)
        total = int(spec["trials"]) + more
        if total > MAX_TRIALS:
            raise ValueError(f"A search holds at most {MAX_TRIALS:,} trials; this one has {spec['trials']:,}.")
        spec.update(trials=total, complete=False)
        write_json(spec_path(sweep_id, root), spec)
    if start:
        advance(sweep_id, root)
    return total


# ---------------------------------------------------------------- driving it
@dataclass
class Advanced:
    """What one `advance` call did."""

    asked: list[tuple[int, str]] = field(default_factory=list)      # (trial, run id)
    told: list[tuple[int, str]] = field(default_factory=list)       # (trial, "complete"/"pruned"/"fail")
    pruning: list[tuple[int, int]] = field(default_factory=list)    # (trial, epoch) asked to stop
    complete: bool = False
    skipped: bool = False                                           # another driver held the lock


def advance(sweep_id: str, root: Path | None = None, wait: bool = True) -> Advanced:
    """Bring the study up to date with its runs and keep it going (idempotent; see the module doc).
    With `wait` off, a search another process is advancing right now is left to it (skipped)."""
    root = root_of(root)
    out = Advanced()
    with _locked(sweep_id, root, wait) as got:
        if not got:
            out.skipped = True
            return out
        spec = load_spec(sweep_id, root)
        if spec.get("complete"):
            out.complete = True
            return out
        study = load_study(sweep_id, root, spec)
        optuna = _optuna()
        running = optuna.trial.TrialState.RUNNING
        for ft in study.get_trials(deepcopy=False):
            if ft.state == running:
                _follow(study, ft, spec, root, out)
        trials = study.get_trials(deepcopy=False)
        asked = sum(t.state != optuna.trial.TrialState.WAITING for t in trials)
        in_flight = sum(t.state == running for t in trials)
        dims = {n: d.distribution() for n, d in dimensions(spec).items()}
        while asked < int(spec["trials"]) and in_flight < int(spec["parallel"]):
            study.sampler = _sampler(spec, asked)
            trial = study.ask(fixed_distributions=dims)
            asked += 1
            if _submit(study, trial, spec, root, out):
                in_flight += 1
        if out.asked:
            queue.dispatch(root)
        if asked >= int(spec["trials"]) and in_flight == 0:
            spec["complete"] = out.complete = True
            write_json(spec_path(sweep_id, root), spec)
    return out


def _submit(study, trial, spec: dict, root: Path, out: Advanced) -> bool:
    """Queue the run of a new trial (not yet dispatched); an invalid combination is a failed trial."""
    from optuna.trial import TrialState

    params = dict(trial.params)
    try:
        cfg = TrainConfig.from_dict({**spec["base"], **params})
        cfg.validate()
        run_dir = queue.submit(cfg, root, nproc=spec.get("nproc"), owner=spec.get("owner"), dispatch_now=False,
                               sweep={"sweep_id": spec["sweep_id"], "params": params, "trial": trial.number,
                                      "search": True})
    except (ValueError, OSError) as exc:
        trial.set_user_attr("reason", f"not started: {exc}")
        study.tell(trial, state=TrialState.FAIL)
        out.told.append((trial.number, "fail"))
        return False
    trial.set_user_attr("run_id", run_dir.name)
    out.asked.append((trial.number, run_dir.name))
    return True


def _run_of(ft, spec: dict, root: Path) -> Path | None:
    """The run directory of a trial: its recorded run id, else (a driver that died between making the run
    and recording it) the run whose sweep.json names this trial."""
    rid = ft.user_attrs.get("run_id")
    if rid:
        d = root / str(rid)
        return d if is_run_dir(d) else None
    for d in run_dirs(root):
        sw = sweep_of(d)
        if sw.get("sweep_id") == spec["sweep_id"] and sw.get("trial") == ft.number:
            return d
    return None


def _follow(study, ft, spec: dict, root: Path, out: Advanced) -> None:
    """One running trial: report its new epoch scores, prune it if the pruner says so, tell it once ended."""
    from optuna.trial import Trial, TrialState

    run_dir = _run_of(ft, spec, root)
    if run_dir is None:
        Trial(study, ft._trial_id).set_user_attr("reason", "its run was deleted or never made")
        study.tell(ft.number, state=TrialState.FAIL)
        out.told.append((ft.number, "fail"))
        return
    if not ft.user_attrs.get("run_id"):
        Trial(study, ft._trial_id).set_user_attr("run_id", run_dir.name)
    snap = summary(run_dir)
    steps = set(ft.intermediate_values)
    trial = None
    behind = False
    if snap.epochs_done > len(steps) or (not snap.status.live and snap.epochs_done):
        trial = Trial(study, ft._trial_id)
        for e in snapshot(run_dir).epochs or []:
            acc = e.get("test_acc")
            if isinstance(acc, (int, float)) and math.isfinite(acc) and int(e["epoch"]) not in steps:
                trial.report(float(acc), int(e["epoch"]))
                steps.add(int(e["epoch"]))
                # the pruner sees each epoch as it is reported (successive halving records each rung so)
                behind = trial.should_prune() or behind
    if snap.status.live:
        if behind and not ft.user_attrs.get("pruned_at") and snap.status.training:
            request_stop(run_dir, PRUNE)
            epoch = max(steps)
            trial.set_user_attr("pruned_at", epoch)
            out.pruning.append((ft.number, epoch))
        return
    trial = trial or Trial(study, ft._trial_id)
    trial.set_user_attr("status", str(snap.status))
    value = snap.last_epoch.get("test_acc")
    has_score = isinstance(value, (int, float)) and math.isfinite(value)
    told = TOLD_AS.get(snap.status, "fail") if has_score else "fail"
    if told != "complete" and snap.reason:
        trial.set_user_attr("reason", snap.reason[:300])
    elif told != "complete" and snap.final.get("message"):
        trial.set_user_attr("reason", str(snap.final["message"])[:300])
    if told == "complete":
        study.tell(ft.number, float(value))
    else:
        study.tell(ft.number, state=TrialState.PRUNED if told == "pruned" else TrialState.FAIL)
    out.told.append((ft.number, told))


def advance_all(root: Path | None = None, wait: bool = False) -> dict[str, Advanced]:
    """Advance every search under the runs root that is not complete (the pages call this as they refresh;
    a search another process is advancing right now is skipped)."""
    out = {}
    for sid in search_ids(root):
        try:
            spec = load_spec(sid, root)
        except ValueError:
            continue
        if not spec.get("complete"):
            out[sid] = advance(sid, root, wait=wait)
    return out


def advance_for_run(run_dir: Path) -> Advanced | None:
    """Advance the search `run_dir` is a trial of (a run process calls this at each epoch end and as it
    exits); None when it is not a search's trial."""
    sw = sweep_of(Path(run_dir))
    if not sw.get("search") or not sw.get("sweep_id"):
        return None
    root = Path(run_dir).resolve().parent
    if not is_search(str(sw["sweep_id"]), root):
        return None
    return advance(str(sw["sweep_id"]), root)


# ---------------------------------------------------------------- reading it
@dataclass
class TrialInfo:
    """One trial as the pages and the CLI show it."""

    number: int
    state: str                          # waiting, running, complete, pruned, fail
    params: dict
    value: float | None                 # the final test accuracy told (complete trials)
    run_id: str | None
    scores: dict[int, float]            # epoch -> test accuracy reported
    pruned_at: int | None = None        # the epoch after which the pruner stopped it
    run_status: str | None = None       # the run's status when it was told
    reason: str = ""
    started: float | None = None
    ended: float | None = None

    @property
    def last_score(self) -> float | None:
        return self.scores[max(self.scores)] if self.scores else None


@dataclass
class SearchState:
    spec: dict
    trials: list[TrialInfo]
    best: TrialInfo | None

    @property
    def sweep_id(self) -> str:
        return self.spec["sweep_id"]

    @property
    def asked(self) -> int:
        return sum(t.state != "waiting" for t in self.trials)

    @property
    def in_flight(self) -> int:
        return sum(t.state == "running" for t in self.trials)

    @property
    def complete(self) -> bool:
        return self.asked >= int(self.spec["trials"]) and self.in_flight == 0

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)


def state(sweep_id: str, root: Path | None = None) -> SearchState:
    """The search as it stands in its study (no run is looked at; `advance` brings the study up to date)."""
    spec = load_spec(sweep_id, root)
    study = load_study(sweep_id, root, spec)
    trials = [_info(ft) for ft in study.get_trials(deepcopy=False)]
    done = [t for t in trials if t.state == "complete" and t.value is not None]
    best = max(done, key=lambda t: (t.value, -t.number)) if done else None
    return SearchState(spec, trials, best)


def _info(ft) -> TrialInfo:
    ua = ft.user_attrs
    pruned_at = ua.get("pruned_at")
    if ft.state.name == "PRUNED" and pruned_at is None and ft.intermediate_values:
        pruned_at = max(ft.intermediate_values)
    return TrialInfo(number=ft.number, state=ft.state.name.lower(), params=dict(ft.params),
                     value=ft.value if ft.state.name == "COMPLETE" else None, run_id=ua.get("run_id"),
                     scores={int(k): float(v) for k, v in sorted(ft.intermediate_values.items())},
                     pruned_at=pruned_at, run_status=ua.get("status"), reason=str(ua.get("reason") or ""),
                     started=ft.datetime_start.timestamp() if ft.datetime_start else None,
                     ended=ft.datetime_complete.timestamp() if ft.datetime_complete else None)


def importances(sweep_id: str, root: Path | None = None) -> tuple[dict[str, float], str]:
    """({setting: importance}, '') from Optuna's fANOVA over the completed trials (seeded), or ({}, why not)."""
    optuna = _optuna()
    spec = load_spec(sweep_id, root)
    study = load_study(sweep_id, root, spec)
    n = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    if n < 2:
        return {}, f"{n} completed trial(s): importances need at least 2."
    try:
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        return {}, f"not computed: {exc}"
    return {k: float(v) for k, v in imp.items()}, ""


def describe(t: TrialInfo) -> str:
    """One line for a trial (the CLI prints one as each trial starts and as it ends)."""
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items())
    run = f" run {t.run_id}" if t.run_id else ""
    if t.state == "running":
        return f"trial {t.number}: started ({params}){run}"
    if t.state == "complete":
        return f"trial {t.number}: finished, test accuracy {100 * t.value:.2f}% ({params}){run}"
    if t.state == "pruned":
        why = "pruned" if t.run_status in (None, "pruned") else f"{t.run_status}, told as pruned"
        last = f", test accuracy {100 * t.last_score:.2f}%" if t.last_score is not None else ""
        return f"trial {t.number}: {why} after epoch {t.pruned_at or max(t.scores or {0: 0})}{last} ({params}){run}"
    if t.state == "fail":
        why = (t.run_status or "no run") + (f": {t.reason}" if t.reason else "")
        return f"trial {t.number}: failed ({why}) ({params}){run}"
    return f"trial {t.number}: waiting ({params})"


__all__ = ["create", "advance", "advance_all", "advance_for_run", "extend", "state", "importances", "describe",
           "is_search", "search_ids", "load_spec", "load_study", "SearchState", "TrialInfo", "Advanced",
           "SAMPLERS", "PRUNERS", "MAX_TRIALS"]
