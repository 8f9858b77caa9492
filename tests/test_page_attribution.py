"""AppTest: the Attribution page (pages/attribution.py): eight methods with faithfulness curves, the
sanity check's verdicts, FGSM/PGD on the image and on a digit, a test image as input."""

from __future__ import annotations

import pytest

from cnnviz.inspect import attribution, loading

from .pagetest import ok, open_page, page_path

PAGE = page_path("attribution")
pytestmark = pytest.mark.skipif("lenet5" not in loading.shipped_checkpoints(),
                                reason="assets/checkpoints/lenet5-cifar10.safetensors is not shipped")


@pytest.fixture(scope="module")
def at():
    return open_page(PAGE, timeout=300, clean=True)


def _captions(at, text: str) -> list[str]:
    return [c.value for c in at.caption if text in c.value]


def _image_captions(at, text: str) -> list[str]:
    return [i.proto.imgs[0].caption for i in at.get("image") if text in (i.proto.imgs[0].caption or "")]


def test_default_render_methods_faithfulness_and_attack(at):
    for m in attribution.METHODS:
        assert _captions(at, f"**{m}**"), m
    assert len(_captions(at, "at `conv_unit`")) == 4          # the four CAMs on the default layer
    auc = next(d.value for d in at.dataframe if "deletion AUC ↓" in d.value.columns)
    assert list(auc["method"]) == list(attribution.METHODS) + ["random order"]
    assert auc["deletion AUC ↓"].between(0, 1).all()
    # Fool it: the image and a digit, each with top-5 before and after and the smallest flipping ε
    assert len([m for m in at.metric if m.label == "Smallest ε that flips it"]) == 2
    assert _captions(at, "The shipped digits LeNet5 on test digit #0")
    assert len(at.get("image")) >= 8 + 1 + 6


def test_sanity_check_says_which_methods_pass(at):
    at.button(key="at_sanity_run").click().run()
    ok(at)
    verdicts = [m.value for m in at.markdown if "passes" in m.value or "fails" in m.value]
    assert len(verdicts) == len(attribution.METHODS)
    occlusion = next(v for v in verdicts if "**Occlusion**" in v)
    assert occlusion.startswith(":green[**passes**]")
    assert len(_image_captions(at, "after each step")) == 8


def test_epsilon_zero_changes_nothing_and_pgd(at):
    at.slider(key="at_eps").set_value(0).run()
    ok(at)
    assert any(m.value.startswith("Still **") and "ε = 0" in m.value for m in at.markdown)
    assert _image_captions(at, "at most 0 of 255 levels per pixel")
    at.slider(key="at_eps").set_value(8).run()
    at.radio(key="at_attack").set_value("PGD").run()
    ok(at)
    assert _image_captions(at, "PGD, ε = 8/255")


def test_digits_weights_on_a_test_image_and_parameters():
    at = open_page(PAGE, timeout=300, state={"at_source_lenet5": "Trained (shipped, digits)"})
    at.radio(key="at_image_source").set_value("A test image").run()
    at.number_input(key="at_test_index").set_value(3).run()
    ok(at)
    cap = _image_captions(at, "test image #3 of digits")
    assert cap and "the model reads" in cap[0]
    at.slider(key="at_p_Integrated Gradients_steps").set_value(8).run()
    at.selectbox(key="at_p_Occlusion_baseline").set_value("black").run()
    ok(at)
    assert _captions(at, "**Integrated Gradients**")


def test_random_weights_are_flagged():
    at = open_page(PAGE, timeout=300, state={"at_source_lenet5": "Random weights"})
    ok(at)
    assert any("Random weights" in w.value for w in at.warning)
    assert any("Choose trained weights" in i.value for i in at.info)
