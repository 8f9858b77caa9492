"""AppTest: the BatchNorm page renders with the default image and its controls change the output."""

from __future__ import annotations

from PIL import Image
from streamlit.testing.v1 import AppTest

from .pagetest import ok, open_page, page_path

PAGE = page_path("batchnorm")


def _metric(at, label: str) -> float:
    return float(next(m.value for m in at.metric if m.label == label))


def test_batchnorm_controls_change_output():
    at = open_page(PAGE, timeout=90, clean=True)
    assert "— the same" in at.success[0].value
    code = [c.value for c in at.code]
    diff10 = _metric(at, "max |train − eval| output")

    at.slider(key="bn_gamma_0").set_value(2.0).run()
    ok(at)
    assert "γ = 2.0000" in at.code[-1].value  # the worked pixel (channel 0) uses gamma = 2
    assert "— the same" in at.success[0].value

    at.slider(key="bn_passes").set_value(40).run()
    ok(at)
    assert [c.value for c in at.code][0] != code[0]
    assert "pass 40" in at.code[0].value
    assert _metric(at, "max |train − eval| output") < diff10  # running stats have converged further

    at.radio(key="bn_px_mode").set_value("eval").run()
    ok(at)
    assert "nn.BatchNorm2d in eval mode" in at.success[0].value and "— the same" in at.success[0].value

    at.checkbox(key="bn_track").uncheck().run()
    ok(at)
    assert _metric(at, "max |train − eval| output") == 0.0
    assert any("keeps no running statistics" in i.value for i in at.info)

    at.slider(key="bn_crops").set_value(0).run()
    at.multiselect(key="bn_others").set_value([]).run()
    ok(at)
    assert "The batch: 1 images" not in at.get("image")[0].captions[0]
    assert "1 image × (1 resized + 0 crops)" in at.get("image")[0].captions[0]


def test_tiny_image_works():
    at = AppTest.from_file(PAGE, default_timeout=90)
    at.session_state["cnnviz_image"] = Image.new("RGB", (1, 1), (10, 200, 30))
    at.run()
    ok(at)


def test_eval_numbers_follow_the_momentum_formula_from_the_shown_statistics():
    """After k train passes from running_mean = 0, running_var = 1 with momentum m, the running stats are
    a·0 + (1 − a)·mean and a·1 + (1 − a)·var_unbiased (a = (1 − m)^k); eval mode then gives channel means
    γ(μ − running_mean)/√(running_var + eps) + β. Checked against the page's table and metric, with
    γ and β set on two channels; train mode gives mean β and variance γ²·var/(var + eps)."""
    import math
    import re

    at = open_page(PAGE, timeout=90, clean=True)
    at.slider(key="bn_passes").set_value(3)
    at.slider(key="bn_gamma_0").set_value(2.0)
    at.slider(key="bn_beta_1").set_value(0.5)
    at.run()
    ok(at)
    table = next(d.value for d in at.dataframe if "mean before" in d.value.columns)
    cap = next(c.value for c in at.caption if "N·H·W =" in c.value)
    n = int(re.search(r"N·H·W = ([\d,]+)", cap).group(1).replace(",", ""))
    m, k, eps = 0.1, 3, 1e-5
    a = (1 - m) ** k
    means = []
    for c, row in table.iterrows():
        mu, var = row["mean before"], row["var before"]
        gamma, beta = {0: (2.0, 0.0), 1: (1.0, 0.5)}.get(int(c), (1.0, 0.0))
        assert (row["gamma"], row["beta"]) == (gamma, beta)
        run_mean, run_var = (1 - a) * mu, a + (1 - a) * var * n / (n - 1)
        eval_mean = gamma * (mu - run_mean) / math.sqrt(run_var + eps) + beta
        assert abs(row["mean after (eval)"] - eval_mean) < 1e-4 * max(1, abs(eval_mean)), (c, row.to_dict(), eval_mean)
        assert abs(row["mean after (train)"] - beta) < 1e-4
        assert abs(row["var after (train)"] - gamma ** 2 * var / (var + eps)) < 1e-4 * gamma ** 2
        means.append(eval_mean)
    assert abs(_metric(at, "eval output: mean of channel means") - sum(means) / len(means)) <= 1.5e-4
