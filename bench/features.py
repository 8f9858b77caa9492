"""Benchmark feature maps of ResNet-18 at 224 px, one image, CPU: python bench/features.py [--repeat N]

Prints, measured side by side in one run:
  * the bare forward `model(x)` of torchvision's ResNet-18 (weights=None, eval, torch.inference_mode),
  * `cnnviz.inspect.features.feature_maps(model, x, [layer])` for an early, a middle and the last layer,
    each as a ratio to the bare forward (target <= 1.3x; the last layer is the worst case: the
    whole forward plus the hook and the copy; earlier layers stop the forward early),
  * the Feature maps page rerun through AppTest with ResNet-18 selected (random weights, the default
    sample image): "first" = the first run (builds the model, lists layers, computes the map),
    "warm" = a rerun with nothing changed (target < 500 ms), "new layer" = a rerun after picking
    another layer (one new feature map; not cached before).
Times are the best (minimum) of --repeat runs after a warm-up: on a shared machine the minimum is
the run least disturbed by other processes. Nothing here is asserted; it prints numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from bench import timing  # noqa: E402
from cnnviz import models  # noqa: E402
from cnnviz.inspect import features  # noqa: E402

LAYERS = ["layer1.0.conv1", "layer3.0.relu:2", "layer4.1.relu:2"]  # early, middle, last spatial output


def best(fn, repeat: int, warmup: int = 2) -> float:
    return timing.best(fn, repeat, warmup)


def pair(a, b, repeat: int) -> tuple[float, float]:
    """Best times of `a` and `b`, called alternately `repeat` times each (after one warm-up call each)."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeat):
        for fn, ts in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return min(ta), min(tb)


def backend(repeat: int) -> None:
    torch.manual_seed(0)
    model = models.create("resnet18", num_classes=1000).eval()
    x = torch.randn(1, 3, 224, 224)

    def bare() -> None:
        with torch.inference_mode():
            model(x)

    best(bare, 3, warmup=5)  # first calls set up oneDNN kernels: keep them out of every figure
    print(f"ResNet-18, 1x3x224x224, CPU, {torch.get_num_threads()} threads, best of {repeat}")
    print(f"  {'layer':18s} {'output':18s} {'bare model(x)':>14s} {'feature_maps':>13s}  ratio")
    worst = 0.0
    for layer in LAYERS:
        # bare and backend calls alternate, so drift on a shared machine affects both sides alike
        t_ref, t_fm = pair(bare, lambda: features.feature_maps(model, x, [layer]), repeat)
        shape = tuple(features.feature_maps(model, x, [layer])[layer].shape)
        worst = max(worst, t_fm / t_ref)
        print(f"  {layer:18s} {str(shape):18s} {t_ref * 1e3:11.1f} ms {t_fm * 1e3:10.1f} ms  {t_fm / t_ref:4.2f}x")
    print(f"  worst ratio {worst:.2f}x (target <= 1.3x)")


def page(repeat: int) -> None:
    at = AppTest.from_file(str(ROOT / "pages" / "feature_maps.py"), default_timeout=300)
    at.session_state["fm_model"] = "resnet18"
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="fm_model").value == "resnet18"

    def rerun() -> None:
        at.run()

    warm = best(rerun, repeat, warmup=1)
    # a new layer each time (distinct maps, so nothing is served from the cache)
    layers = [o.split(" · ")[0].strip() for o in at.selectbox(key="fm_layer_resnet18").options]
    picks = [n for n in layers if n.startswith(("layer2.", "layer3."))][: repeat + 1]
    new = []
    for n in picks:
        at.selectbox(key="fm_layer_resnet18").set_value(n)
        t = time.perf_counter()
        at.run()
        new.append(time.perf_counter() - t)
        assert not at.exception, at.exception
    print("Feature maps page (AppTest, ResNet-18 random weights, default image)")
    print(f"  first run {first * 1e3:7.0f} ms   warm rerun {warm * 1e3:5.0f} ms (target < 500)   "
          f"new layer {min(new) * 1e3:5.0f} ms (best of {len(new)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--skip-page", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backend(args.repeat)
    if not args.skip_page:
        page(max(3, args.repeat // 3))


if __name__ == "__main__":
    main()
