"""Run hostile inputs in a child process and measure the memory each one really took.

`measure(setup, attacks, budget_mb)` starts `python -c CHILD` (an argv list) with
CNNVIZ_SERVER_BUDGET_MB set. The child runs `setup` (imports, files), then for each attack
(name -> Python statement) resets its peak resident set (`/proc/self/clear_refs` 5), runs the
statement and reports the exception it raised (type, message) and how far the resident set rose
above where it started (VmHWM - VmRSS, bytes). An address-space limit (RLIMIT_AS) of the current
size + the budget + slack is set before the first attack, so a guard that fails ends that attack
with MemoryError (reported as such) instead of taking the shared machine down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLACK_MB = 768  # thread stacks and malloc arenas reserve address space they never touch

CHILD = r'''
import json, resource, sys, traceback

def _vm(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

args = json.loads(sys.argv[1])
exec(compile(args["setup"], "<setup>", "exec"))
room = _vm("VmSize") + (args["budget_mb"] + args["slack_mb"]) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (room, room))
out = {}
for name, stmt in args["attacks"].items():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident set starts again from here
    base = _vm("VmRSS")
    err = None
    try:
        exec(compile(stmt, "<" + name + ">", "exec"))
    except MemoryError:
        err = ["MemoryError", "the address-space limit was hit: the guard did not hold"]
    except Exception as exc:
        err = [type(exc).__name__, str(exc), traceback.format_exc()[-1500:]]
    out[name] = {"error": err, "rise": _vm("VmHWM") - base, "result": globals().get("RESULT")}
    globals().pop("RESULT", None)
print("HOSTILE " + json.dumps(out))
'''


def measure(setup: str, attacks: dict[str, str], budget_mb: int, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: int = 300) -> dict[str, dict]:
    """{attack name: {"error": [type, message, traceback] or None, "rise": bytes, "result": RESULT}}."""
    e = dict(os.environ)
    e.update({"CNNVIZ_SERVER_BUDGET_MB": str(budget_mb), "OMP_NUM_THREADS": "1",
              "PYTHONPATH": str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")})
    e.update(env or {})
    arg = json.dumps({"setup": setup, "attacks": attacks, "budget_mb": budget_mb, "slack_mb": SLACK_MB})
    p = subprocess.run([sys.executable, "-c", CHILD, arg], cwd=str(cwd or ROOT), env=e, capture_output=True,
                       text=True, timeout=timeout)
    line = next((ln for ln in reversed(p.stdout.splitlines()) if ln.startswith("HOSTILE ")), None)
    assert p.returncode == 0 and line is not None, f"child failed (rc {p.returncode}):\n{p.stderr[-4000:]}"
    out = json.loads(line[len("HOSTILE "):])
    log = os.environ.get("CNNVIZ_HOSTILE_LOG")  # for people: one JSON line per attack (name, rise, message)
    if log:
        with open(log, "a", encoding="utf-8") as f:
            for name, r in out.items():
                f.write(json.dumps({"attack": name, "budget_mb": budget_mb, "rise_mb": round(r["rise"] / 2**20, 1),
                                    "error": (r["error"] or [None, None])[:2]}) + "\n")
    return out


def refused(report: dict, kind: str, *words: str) -> str:
    """Assert an attack was refused with exception `kind` whose one-line message holds `words`; returns it."""
    err = report["error"]
    assert err is not None, f"not refused: {report}"
    assert err[0] == kind, f"{err[0]}: {err[1]}\n{err[2] if len(err) > 2 else ''}"
    assert "\n" not in err[1] and "Traceback" not in err[1], err[1]
    for w in words:
        assert w in err[1], f"{w!r} not in {err[1]!r}"
    return err[1]


def under_budget(report: dict, budget_mb: int) -> None:
    """The resident set rose by less than the budget while the attack ran."""
    assert report["rise"] < budget_mb * 2**20, f"rose {report['rise'] / 2**20:.0f} MB (budget {budget_mb} MB)"
