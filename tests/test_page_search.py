"""The pages' side of search sweeps: the Runs page's view of a search (optimisation history, each trial's
epochs with where it was pruned, importances, "Continue this search") and the Train page's Search mode.

The Runs page test writes the trials' run directories as their processes would have left them and lets
`search.advance` tell the study what they did (the real path, nothing trains); "Continue" and the Train
page start real (tiny) runs, which the fixture ends with the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnviz import runs
from cnnviz.runs import search
from cnnviz.train import TrainConfig

from .pagetest import open_page, page_path
from .runtools import runs_root  # noqa: F401  (fixture)

TINY = dict(model="lenet5", dataset="digits", epochs=1, batch_size=32, device="cpu", limit_train=128,
            limit_test=128, seed=0)
RESULTS = [  # (settings, test accuracy per epoch, how the run ended)
    ({"lr": 1e-3, "batch_size": 32}, [0.5, 0.7, 0.8], "finished"),
    ({"lr": 1e-2, "batch_size": 64}, [0.6, 0.75, 0.85], "finished"),
    ({"lr": 1e-5, "batch_size": 32}, [0.12], "pruned"),
    ({"lr": 3e-3, "batch_size": 64}, [0.55, 0.72, 0.78], "finished"),
]


def _fake_search(root: Path) -> str:
    """A 4-trial search whose trials' runs ended as RESULTS say, told to the study by `advance`."""
    sid = search.create({"lr": "1e-5:1e-1:log", "batch_size": "32,64"}, base={**TINY, "epochs": 3},
                        trials=len(RESULTS), enqueue=[p for p, _, _ in RESULTS], start=False)
    study = search.load_study(sid, root)
    dims = {n: d.distribution() for n, d in search.dimensions(search.load_spec(sid, root)).items()}
    for i, (params, accs, end) in enumerate(RESULTS):
        trial = study.ask(fixed_distributions=dims)
        d = root / f"20261201-1200{i:02d}-lenet5-digits-{i:016x}"
        d.mkdir()
        (d / runs.CONFIG_FILE).write_text(json.dumps(TrainConfig(**{**TINY, "epochs": 3, **params}).to_dict()))
        (d / runs.SWEEP_FILE).write_text(json.dumps({"sweep_id": sid, "params": params, "trial": i, "search": True}))
        lines = [{"kind": "start", "t": 1.0 + i}]
        lines += [{"kind": "epoch", "epoch": e, "test_acc": a, "train_acc": a, "test_loss": 1 - a, "train_loss": 1 - a,
                   "images_per_s": 900.0, "elapsed_s": float(e)} for e, a in enumerate(accs, 1)]
        lines += [{"kind": "done", "status": end, "epochs_done": len(accs)}]
        (d / runs.METRICS_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines))
        trial.set_user_attr("run_id", d.name)
    done = search.advance(sid, root)
    assert sorted(done.told) == [(0, "complete"), (1, "complete"), (2, "pruned"), (3, "complete")]
    assert done.complete and not done.asked
    return sid


def test_runs_page_shows_a_search_history_pruning_importances_and_continues_it(runs_root):  # noqa: F811
    sid = _fake_search(runs_root)
    at = open_page("runs", clean=True)
    assert at.selectbox(key="runs_sweep").value == sid
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    assert "Optimisation history" in titles and any(t.startswith("Test accuracy per epoch") for t in titles)
    assert "Setting importance (fANOVA)" in titles
    history = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "Optimisation" in c.proto.spec)
    best_line = next(t for t in history["data"] if t["name"] == "best so far")
    assert best_line["y"] == pytest.approx([80.0, 85.0, 85.0, 85.0])
    pruned = next(t for t in history["data"] if t["name"].startswith("pruned"))
    assert pruned["x"] == [2] and pruned["y"] == pytest.approx([12.0])
    caps = " ".join(c.value for c in at.caption)
    assert "3 finished" in caps and "1 pruned" in caps and "85.00% by trial 1 (lr=0.01, batch_size=64)" in caps
    assert "trial 2 after epoch 1 (12.0%)" in caps
    assert "lr " in caps and "batch_size " in caps  # the importances, with their numbers
    assert any("TPE sampler" in m.value and "4 of 4 trials asked" in m.value for m in at.markdown)
    # Continue this search: one more trial, asked from the same study and queued as a run
    at.number_input(key=f"runs_search_more_{sid}").set_value(1)
    at.button(key=f"runs_search_continue_{sid}").click().run()
    assert not at.exception and not [e.value for e in at.error]
    spec = search.load_spec(sid, runs_root)
    assert spec["trials"] == 5 and not spec["complete"]
    st = search.state(sid, runs_root)
    assert [t.number for t in st.trials] == [0, 1, 2, 3, 4] and st.trials[4].state == "running"
    new_run = runs.summary(runs_root / st.trials[4].run_id)
    assert new_run.sweep["trial"] == 4 and str(new_run.status) in ("queued", "starting", "running", "finished")


def test_train_page_search_mode_refuses_a_bad_range_and_starts_a_search(runs_root):  # noqa: F811
    at = open_page(page_path("training"), timeout=60)
    state = {"train_dataset": "digits", "train_epochs": 1, "train_batch_size": 32, "train_device": "cpu",
             "train_limit_train": 128, "train_limit_test": 128, "train_search_on": True,
             "train_range_lr": "1e-1:1e-4", "train_search_trials": 2, "train_search_parallel": 1,
             "train_search_pruner": "median"}
    for k, v in state.items():
        at.session_state[k] = v
    at.button(key="train_start").click().run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "lr: the range 1e-1:1e-4 has its low end above its high end." in errors[0]
    assert not any(runs_root.iterdir())  # nothing queued, no study
    at.session_state["train_range_lr"] = "1e-3:1e-2:log"
    at.session_state["train_sweep_batch_size"] = [32, 64]
    at.button(key="train_start").click().run()
    assert not at.exception and not [e.value for e in at.error]
    [sid] = search.search_ids(runs_root)
    spec = search.load_spec(sid, runs_root)
    assert spec["space"]["lr"] == {"name": "lr", "kind": "float", "low": 1e-3, "high": 1e-2, "log": True,
                                   "choices": []}
    assert spec["space"]["batch_size"]["choices"] == [32, 64]
    assert spec["trials"] == 2 and spec["parallel"] == 1 and spec["pruner"] == "median"
    assert spec["base"]["dataset"] == "digits" and spec["base"]["limit_train"] == 128
    first = search.state(sid, runs_root).trials
    assert len(first) == 1 and first[0].run_id and (runs_root / first[0].run_id / runs.SWEEP_FILE).is_file()
