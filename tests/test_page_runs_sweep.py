"""The Runs page compares a sweep: table of settings and scores (best marked) and a parallel-coordinates chart.

The sweep's runs are written here as run directories (config, sweep record, metrics lines), as the
run processes would have left them: nothing trains, nothing waits.
"""

from __future__ import annotations

import json

import pytest

from cnnviz.train import TrainConfig
from cnnviz import runs
from cnnviz.runs import queue
from cnnviz.runs import sweeps

from .pagetest import open_page


def _sweep(root, sweep_id: str, accs: dict[tuple[float, int], float | None]) -> None:
    for i, ((lr, bs), acc) in enumerate(accs.items()):
        d = root / f"20261130-1200{i:02d}-lenet5-shapes-{i:04x}"
        d.mkdir(parents=True)
        (d / runs.CONFIG_FILE).write_text(json.dumps(TrainConfig(lr=lr, batch_size=bs, epochs=2).to_dict()))
        (d / queue.SWEEP_FILE).write_text(json.dumps({"sweep_id": sweep_id, "params": {"lr": lr, "batch_size": bs}}))
        lines = [{"kind": "start", "t": 1.0 + i}]
        if acc is not None:
            lines += [{"kind": "epoch", "epoch": 1, "test_acc": acc, "test_loss": 1.0 - acc, "train_loss": 1.1,
                       "images_per_s": 1000.0}, {"kind": "done", "status": "finished"}]
        (d / runs.METRICS_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "runs"
    monkeypatch.setenv("CNNVIZ_RUNS", str(r))
    return r


def test_runs_page_draws_a_sweep_comparison_with_the_best_run_marked(root):
    _sweep(root, "sweep-a", {(1e-3, 64): 0.41, (1e-2, 64): 0.62, (1e-3, 128): 0.37, (1e-2, 128): None})
    rows = sweeps.table("sweep-a", root)
    assert [r["test_acc"] for r in rows][:3] == [0.62, 0.41, 0.37] and rows[0]["best"]
    at = open_page("runs", clean=True)
    assert at.selectbox(key="runs_sweep").value == "sweep-a"
    charts = [c for c in at.get("plotly_chart") if "parcoords" in c.proto.spec]
    assert len(charts) == 1
    spec = json.loads(charts[0].proto.spec)
    dims = spec["data"][0]["dimensions"]
    assert [d["label"] for d in dims] == ["lr", "batch_size", "test accuracy (%)"]
    assert sorted(dims[-1]["values"]) == pytest.approx([37.0, 41.0, 62.0])
    table = next(d.value for d in at.dataframe if "best" in d.value.columns)
    assert list(table["best"])[:2] == ["★", ""] and list(table["test acc %"])[0] == 62.0
    assert list(table["status"]).count("finished") == 3
    caps = " ".join(c.value for c in at.caption)
    assert "3 of 4" in caps and "62.00%" in caps and "lr=0.01" in caps


def test_a_sweep_with_one_finished_run_says_when_the_chart_comes(root):
    _sweep(root, "sweep-b", {(1e-3, 64): 0.5, (1e-2, 64): None})
    at = open_page("runs", clean=True)
    assert not [c for c in at.get("plotly_chart") if "parcoords" in c.proto.spec]
    assert any("1 of 2 runs" in i.value for i in at.info)
