"""ui/live.py: the live view's refresh choices and the chart hold (which data the charts show)."""

from __future__ import annotations

import pytest

from ui import live


def test_refresh_seconds_auto_goes_by_where_the_run_trains():
    for c in (None, "auto", 7, "2"):  # nothing picked, auto, or anything unknown: auto
        assert live.refresh_seconds(c, "cpu") == live.AUTO_REFRESH_S["cpu"]
        assert live.refresh_seconds(c, "cuda") == live.refresh_seconds(c, "mps") == live.AUTO_REFRESH_S["gpu"]
    assert live.AUTO_REFRESH_S["cpu"] > live.AUTO_REFRESH_S["gpu"]  # gentler where the browser competes
    for s in live.REFRESH_CHOICES[1:]:
        assert live.refresh_seconds(s, "cpu") == live.refresh_seconds(s, "cuda") == s
    assert live.DEFAULT_REFRESH in live.REFRESH_CHOICES
    assert live.chart_period(2) == 2 * live.CHARTS_EVERY


def test_describe_refresh_says_both_periods():
    assert live.describe_refresh(5) == f"every 5 s (charts every {5 * live.CHARTS_EVERY} s)"
    auto = live.describe_refresh("auto")
    assert f"every {live.AUTO_REFRESH_S['cpu']} s for a run on the CPU" in auto
    assert f"every {live.AUTO_REFRESH_S['gpu']} s on a GPU" in auto
    assert live.describe_refresh(None) == auto


def _steps(n):
    return [{"step": i + 1, "loss": 1.0 / (i + 1)} for i in range(n)]


def test_hold_keeps_the_same_lists_until_the_period_has_passed():
    hold = live.ChartHold(period=10.0)
    s1, e1 = hold.view(_steps(5), [], now=100.0)  # first call: always fresh
    assert len(s1) == 5 and e1 == []
    s2, e2 = hold.view(_steps(9), [], now=105.0)  # within the period: the held lists, unchanged
    assert s2 is s1 and e2 is e1 and len(s2) == 5
    s3, _ = hold.view(_steps(12), [], now=110.0)  # period passed: renewed
    assert len(s3) == 12 and s3 is not s1


def test_hold_renews_when_the_run_ends_but_not_at_each_epoch_end():
    hold = live.ChartHold(period=60.0)
    hold.view(_steps(5), [], now=0.0)
    steps, epochs = hold.view(_steps(8), [{"epoch": 1, "test_acc": 0.5}], now=1.0)  # an epoch finished
    assert len(steps) == 5 and epochs == []  # short epochs must not redraw the charts every refresh
    steps, epochs = hold.view(_steps(10), [{"epoch": 1}], now=2.0, ended=True)  # the run ended: final data
    assert len(steps) == 10 and len(epochs) == 1


def test_hold_shows_the_first_data_at_once():
    """A run still loading has no steps; the first logged step is shown at the next refresh, not a
    period later."""
    hold = live.ChartHold(period=60.0)
    assert hold.view([], [], now=0.0) == ([], [])
    assert len(hold.view(_steps(1), [], now=1.0)[0]) == 1
    assert len(hold.view(_steps(2), [], now=2.0)[0]) == 1  # then held


def test_hold_renews_when_the_steps_shrink():
    """Fewer steps than held means other data (a reset), never a stale longer curve."""
    hold = live.ChartHold(period=60.0)
    hold.view(_steps(50), [], now=0.0)
    assert len(hold.view(_steps(3), [], now=1.0)[0]) == 3


def test_held_lists_are_copies():
    src = _steps(3)
    hold = live.ChartHold(period=60.0)
    held, _ = hold.view(src, [], now=0.0)
    src.append({"step": 4, "loss": 0.1})  # the job appends to its own lists
    assert len(held) == 3


@pytest.mark.parametrize("refresh", live.REFRESH_CHOICES[1:])
def test_charts_redraw_at_most_every_charts_every_refreshes(refresh):
    """Simulate a live view refreshed every `refresh` s for a run logging a step every 0.5 s with
    epochs of 4 s: the charts' data changes about once per chart period, whatever the epochs."""
    hold = live.ChartHold(period=live.chart_period(refresh))
    seen, renewals = None, 0
    t, duration = 0.0, 200.0
    while t <= duration:
        steps = _steps(int(t / 0.5))
        epochs = [{"epoch": k + 1} for k in range(int(t // 4))]
        out = hold.view(steps, epochs, now=t)
        if out[0] is not seen:
            renewals += 1
            seen = out[0]
        t += refresh
    assert renewals <= duration / live.chart_period(refresh) + 2  # first data, then once a period
    assert renewals >= duration / live.chart_period(refresh) - 1  # it does renew along the way
