"""`python -m cnnviz sweep --search tpe|random ...`: an Optuna search from the command line.

    python -m cnnviz sweep --search tpe --trials 16 --parallel 2 --lr 1e-4:1e-1:log \\
        --batch-size 64,128,256 --optimizer adam,sgd --epochs 6 --prune median --seed 0
    python -m cnnviz sweep --continue SEARCH_ID [--more 4] [--detach]

A setting given as `low:high[:log]` (a number setting) is a range, `a,b,c` a choice, one value a setting
of every trial. In the foreground the command drives the search (`cnnviz.runs.search.advance` about once
a second) and prints a line as each trial starts and as it ends, then a JSON summary as its last line;
`--detach` queues the first trials and returns (the trials' own processes go on with it as they end,
and the Train and Runs pages as they refresh). Ctrl-C leaves the search to them; `--continue ID` drives
it again. The sampler's seed is `--search-seed`, else the runs' `--seed` (default 0). Bad input: one
line on stderr, exit code 2, nothing queued.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_flags(sw: argparse.ArgumentParser) -> None:
    """The search flags of the `sweep` subcommand."""
    from .runs.search import MAX_TRIALS, PRUNERS, SAMPLERS

    g = sw.add_argument_group("search (Optuna): ranges low:high[:log] and choices a,b,c")
    g.add_argument("--search", choices=SAMPLERS, default=None,
                   help="search instead of a grid: TPE (model-based) or random sampling")
    g.add_argument("--trials", type=int, default=None, help=f"trials in all (default 16, at most {MAX_TRIALS:,})")
    g.add_argument("--parallel", type=int, default=None, help="trials queued or training at once (default 1)")
    g.add_argument("--prune", choices=PRUNERS, default=None,
                   help="stop trials that are behind after an epoch: median, asha (successive halving), "
                        "hyperband, none (default median)")
    g.add_argument("--prune-startup", type=int, default=None,
                   help="trials that must complete before the median pruner acts (default: a quarter, 2..5)")
    g.add_argument("--search-seed", type=int, default=None, help="the sampler's seed (default: --seed, else 0)")
    g.add_argument("--detach", action="store_true", help="queue the first trials and return")
    g.add_argument("--continue", dest="continue_id", default=None, metavar="SEARCH_ID",
                   help="drive an existing search again (with --more N: add N trials)")
    g.add_argument("--more", type=int, default=None, help="with --continue: this many more trials")
    g.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)


def grid_problem(args: argparse.Namespace) -> str | None:
    """Why a grid sweep's arguments hold search flags, or None."""
    used = [flag for flag, dest in (("--trials", "trials"), ("--parallel", "parallel"), ("--prune", "prune"),
                                    ("--prune-startup", "prune_startup"), ("--search-seed", "search_seed"),
                                    ("--more", "more")) if getattr(args, dest) is not None]
    used += ["--detach"] if args.detach else []
    return f"{', '.join(used)} go(es) with --search tpe|random (without it the sweep is a grid)" if used else None


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def cmd_search(args: argparse.Namespace, given: dict) -> int:
    """Make (or continue) a search, then drive it in the foreground unless --detach."""
    from .runs import search

    try:
        if args.continue_id:
            if given or args.search or args.trials is not None:
                return _fail("--continue takes no settings, --search or --trials: use --more N to add trials")
            sweep_id = args.continue_id
            search.load_spec(sweep_id)
            if args.more is not None:
                search.extend(sweep_id, args.more)
            else:
                search.advance(sweep_id)
        else:
            if args.more is not None:
                return _fail("--more goes with --continue SEARCH_ID")
            sweep_id = search.create(
                given, preset=args.preset, sampler=args.search, trials=16 if args.trials is None else args.trials,
                parallel=1 if args.parallel is None else args.parallel, pruner=args.prune or "median",
                seed=args.search_seed, prune_startup=args.prune_startup, nproc=args.nproc, owner=args.owner)
    except (ValueError, TypeError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if args.detach:
        st = search.state(sweep_id)
        print(json.dumps({"sweep_id": sweep_id, "trials": st.spec["trials"],
                          "run_dirs": [str(search.root_of(None) / t.run_id) for t in st.trials if t.run_id]}),
              flush=True)
        return 0
    return drive(sweep_id, poll=max(0.05, args.poll))


def drive(sweep_id: str, poll: float = 1.0, root: Path | None = None) -> int:
    """Advance the search until it is complete, a line per trial as it starts and as it ends."""
    from .runs import search

    printed: dict[int, str] = {}
    try:
        while True:
            search.advance(sweep_id, root)
            st = search.state(sweep_id, root)
            for t in st.trials:
                if t.state != "waiting" and printed.get(t.number) != t.state:
                    printed[t.number] = t.state
                    print(search.describe(t), flush=True)
            if st.complete:
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        print(f"\nleft search {sweep_id}: its runs go on, and so does the search as they end; "
              f"`python -m cnnviz sweep --continue {sweep_id}` follows it again", file=sys.stderr)
        return 0
    except (ValueError, OSError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    best = st.best
    counts = {s: st.count(s) for s in ("complete", "pruned", "fail")}
    if best is not None:
        print(f"best: trial {best.number}, test accuracy {100 * best.value:.2f}% "
              f"({', '.join(f'{k}={v}' for k, v in best.params.items())}), run {best.run_id}", flush=True)
    epochs = sum(len(t.scores) for t in st.trials)
    print(json.dumps({"sweep_id": sweep_id, **counts, "epochs_trained": epochs,
                      "best": None if best is None else {"trial": best.number, "test_acc": best.value,
                                                         "params": best.params, "run_id": best.run_id}}),
          flush=True)
    return 0


def advance_for_run_quietly(run_dir: Path) -> None:
    """Advance the search `run_dir` is a trial of (a run process, at each epoch end and as it exits)."""
    from .runs import search

    try:
        search.advance_for_run(run_dir)
    except Exception as exc:  # noqa: BLE001 - the search's problem must not fail the run: one line, go on
        print(f"note: the search was not advanced: {type(exc).__name__}: {exc}", file=sys.stderr)
