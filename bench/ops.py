"""Benchmark the operations pages on a 1024×768 image, on CPU: python bench/ops.py [--repeat N]

For each page it prints, measured side by side in one run:
  * the bare PyTorch call the page is about (F.conv2d / F.interpolate / F.max_pool2d on the same tensor),
  * the page's backend computation (cnnviz.ops), and backend + the display pictures it prepares,
    each as a ratio to the bare call (target: backend < 1.5× the bare call),
  * the page's whole rerun through AppTest with the image preset in session_state["cnnviz_image"]:
    "cold" = every st.cache_* cleared first (what the first run after changing a control costs),
    "warm" = nothing changed (what any other widget interaction costs). Target: < 300 ms.
Times are the best (minimum) of --repeat runs, as timeit recommends: on a shared machine the
minimum is the run least disturbed by other processes. Nothing here is asserted; it prints numbers.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

logging.disable(logging.WARNING)  # no bare-mode Streamlit warnings between the figures

from bench.timing import best  # noqa: E402
from cnnviz import images  # noqa: E402
from cnnviz.images import display  # noqa: E402
from cnnviz.ops import batchnorm, conv, kernels, pool, resample, previews  # noqa: E402


def timeit(fn, repeat: int) -> float:
    return best(fn, repeat, warmup=1)  # one warm-up call (allocator, lazy init)


def page_times(page: str, im, repeat: int) -> tuple[float, float, float]:
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=120)
    at.session_state["cnnviz_image"] = im
    at.session_state["cnnviz_image_label"] = "bench 1024x768"
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    cold, warm = [], []
    for _ in range(repeat):
        st.cache_data.clear()
        st.cache_resource.clear()
        t = time.perf_counter()
        at.run()
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - t)
    return first, min(cold), min(warm)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    r = args.repeat
    im = images.load_image(images.samples()[0].path).resize((1024, 768))
    x = display.pil_to_tensor(im)
    print(f"image 1024x768 RGB, tensor {tuple(x.shape)}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, best of {r}\n")

    rows = []
    # --- convolution: page defaults (Sobel x 3x3, padding 1 zeros, depthwise over RGB)
    k3 = kernels.make("sobel x", 3)
    w = k3.expand(3, 1, 3, 3).contiguous()
    bare = timeit(lambda: F.conv2d(x[None], w, padding=1, groups=3), r)
    backend = timeit(lambda: conv.convolve(x, k3, padding=1), r)

    def conv_full():
        res = conv.convolve(x, k3, padding=1)
        s = previews.display_scale([tuple(res.input.shape[1:]), tuple(res.output.shape[1:])])
        previews.to_image(res.input, s), previews.to_image(res.output, s), previews.to_signed(res.output.mean(0), s)
        conv.receptive_field(res, 384, 512, 0)
    full = timeit(conv_full, r)
    rows.append(("Convolution", "F.conv2d (groups=3, 3x3, pad 1)", bare, backend, full))
    refl = timeit(lambda: conv.convolve(x, k3, padding=1, padding_mode="reflect"), r)
    bare_refl = timeit(lambda: F.conv2d(F.pad(x[None], (1,) * 4, mode="reflect"), w, groups=3), r)
    rows.append(("  reflect padding", "F.pad + F.conv2d", bare_refl, refl, float("nan")))

    # --- upsample: page defaults (bilinear x2)
    bare = timeit(lambda: F.interpolate(x[None], scale_factor=2, mode="bilinear", align_corners=False), r)
    backend = timeit(lambda: resample.upsample(x, "bilinear", scale=2), r)

    def up_full():
        res = resample.upsample(x, "bilinear", scale=2)
        previews.to_image(res.output, previews.display_scale([tuple(res.output.shape[1:])], 720, 540))
        resample.upsample(x, "nearest", scale=2)
        resample.transposed_upsample(x, 2)
    full = timeit(up_full, r)
    rows.append(("Upsample", "F.interpolate (bilinear x2)", bare, backend, full))
    # --- pooling: page defaults (max 2x2 stride 2 with indices)
    bare = timeit(lambda: F.max_pool2d(x[None], 2, 2, return_indices=True), r)
    backend = timeit(lambda: pool.pool(x, "max", kernel=2, stride=2), r)

    def pool_full():
        res = pool.pool(x, "max", kernel=2, stride=2)
        pool.winner_counts(res.indices, (768, 1024))
        pool.round_trip(x, res, "nearest")
    full = timeit(pool_full, r)
    rows.append(("Pooling", "F.max_pool2d (2x2, indices)", bare, backend, full))

    # --- BatchNorm: page defaults (6 images, 2 crops each, 32x32, 4 channels, 10 passes)
    ims = [im] + [images.prepare(images.load_image(s.path), max_side=256) for s in images.samples()[1:]]
    bare_bn_conv = timeit(lambda: F.conv2d(x[None], w, padding=1, groups=3), r)

    def bn_backend():
        b = batchnorm.make_batch(ims, size=32, crops_per_image=2, seed=0)
        f = batchnorm.conv_features(b, channels=4, seed=0)
        batchnorm.train_then_eval(f, batchnorm.BNSettings(), passes=10)
    backend = timeit(bn_backend, r)
    feats = batchnorm.conv_features(batchnorm.make_batch(ims, size=32, crops_per_image=2, seed=0), 4, 0)
    layer = torch.nn.BatchNorm2d(4)
    bare_bn = timeit(lambda: [layer(feats) for _ in range(11)], r)
    bn_only = timeit(lambda: batchnorm.train_then_eval(feats, batchnorm.BNSettings(), passes=10), r)
    rows.append(("BatchNorm (batch+conv+BN)", "F.conv2d on the 1024x768 image", bare_bn_conv, backend, float("nan")))
    rows.append(("  BN passes only", "11 x nn.BatchNorm2d(4) forward", bare_bn, bn_only, float("nan")))

    print(f"{'backend':28s} {'bare call':34s} {'bare ms':>8s} {'ops ms':>8s} {'ratio':>6s} {'ops+view ms':>11s}")
    for name, what, b, o, f in rows:
        fv = "" if f != f else f"{f * 1e3:11.1f}"
        print(f"{name:28s} {what:34s} {b * 1e3:8.2f} {o * 1e3:8.2f} {o / b:6.2f} {fv}")
    cl = timeit(lambda: F.conv2d(x[None].contiguous(memory_format=torch.channels_last), w, padding=1, groups=3), r)
    print(f"(the same depthwise F.conv2d on a channels_last copy, which cnnviz.ops.conv uses: {cl * 1e3:.2f} ms; "
          f"convolve / that = {rows[0][3] / cl:.2f})\n")

    bare_for_page = {"convolution.py": ("F.conv2d", rows[0][2]), "upsample_pooling.py": ("F.interpolate", rows[2][2]),
                     "batchnorm.py": ("F.conv2d", rows[0][2])}
    print(f"{'page rerun (AppTest, 1024x768)':28s} {'first ms':>9s} {'cold ms':>9s} {'warm ms':>9s}  "
          f"{'cold / bare call':>22s}")
    for page in ("convolution.py", "upsample_pooling.py", "batchnorm.py"):
        first, cold, warm = page_times(page, im, r)
        name, b = bare_for_page[page]
        print(f"{page:28s} {first * 1e3:9.0f} {cold * 1e3:9.0f} {warm * 1e3:9.0f}  "
              f"{cold / b:8.1f}x {name:>13s}")
    print("\nfirst: a fresh session's first run (imports pandas/plotly on first use); cold: caches cleared, "
          "i.e. a new image; warm: a rerun that changes nothing cached (e.g. a crop slider).")


if __name__ == "__main__":
    main()
