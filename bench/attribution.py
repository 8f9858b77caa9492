"""Timings of the Attribution and Projector pages' backends (printed, not asserted).

    python bench/attribution.py [--points 5000] [--skip-umap] [--parts projector,attribution,fgsm]

- Projector: PCA of 10,000 x 512 features; t-SNE (openTSNE) and UMAP (umap-learn) of N points of
  real penultimate features (the shipped CIFAR-10 LeNet5 on the CIFAR-10 test set where the shared
  copy exists, else the digits LeNet5 on its 500 test digits, repeated with noise to N); the cached
  second request (the Projector page rerun by AppTest once its job is done).
- Attribution: each method on one 32x32 image with the shipped LeNet5 and ResNet-small (median
  of 3 after a warm-up); the full sanity check (all eight methods, every layer).
- FGSM: one attack (a slider move) and the 0..32 sweep.

The machine's load average is printed with the figures: on a shared 2-core machine they vary a lot.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cnnviz.images import load_image, samples  # noqa: E402
from cnnviz.inspect import adversarial, attribution, features, projector, loading  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"


def timed(fn, repeat: int = 3, warm: bool = True) -> float:
    if warm:
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def real_features(n: int) -> tuple[np.ndarray, str]:
    shipped = loading.shipped_checkpoints()
    if (CIFAR / "test").is_dir() and "lenet5" in shipped:
        loaded = loading.from_checkpoint(shipped["lenet5"], "lenet5")
        ts = projector.test_set(f"folder:{CIFAR}", 32, n)
        f = projector.extract(loaded.model, ts.inputs, loaded.mean, loaded.std)
        return f.vectors, f"{len(f.vectors):,} CIFAR-10 test images, LeNet5 penultimate ({f.vectors.shape[1]}-d)"
    loaded = loading.from_checkpoint(loading.shipped_for("lenet5")["digits"], "lenet5")
    ts = projector.test_set("digits", 32, n)
    f = projector.extract(loaded.model, ts.inputs, loaded.mean, loaded.std)
    reps = -(-n // len(f.vectors))
    v = np.concatenate([f.vectors + np.random.default_rng(i).normal(0, 0.05, f.vectors.shape).astype(np.float32)
                        for i in range(reps)])[:n]
    return v, f"{n:,} points from the 500 digits test images (repeated with noise; no CIFAR-10 copy here)"


def page_rerun() -> float:
    """The Projector page's rerun once its (PCA) job is done: what a cached request costs."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "projector.py"), default_timeout=600)
    at.run()
    projector.wait_jobs(600)
    at.run()
    t = time.perf_counter()
    at.run()
    return time.perf_counter() - t


def fgsm_slider_rerun(repeat: int = 5) -> tuple[float, float]:
    """The Attribution page's rerun when the ε slider moves (a new attack; the sweep and the methods'
    maps are cached): wall and server-CPU seconds, median over `repeat` moves after a warm-up."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "attribution.py"), default_timeout=600)
    at.run()
    walls, cpus = [], []
    for k in range(repeat + 1):
        slider = at.slider(key="at_eps").set_value(9 + k)
        t, c = time.perf_counter(), time.process_time()
        slider.run()
        if k:  # the first move warms the page's caches
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        assert not at.exception, at.exception
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=5000)
    ap.add_argument("--skip-umap", action="store_true")
    ap.add_argument("--parts", default="projector,attribution,fgsm",
                    help="which parts to run, comma-separated: projector, attribution, fgsm, contention")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    if "projector" in parts:
        projector_part(args)
    if "attribution" in parts:
        attribution_part()
    if "fgsm" in parts:
        fgsm_part()
    if "contention" in parts:
        contention_part()
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


def projector_part(args) -> None:
    print("\n# Projector")
    x = np.random.default_rng(0).standard_normal((10_000, 512)).astype(np.float32)
    print(f"PCA of 10,000 x 512 (torch.pca_lowrank): {timed(lambda: projector.fit_pca(x, 2)):.2f} s")
    vecs, what = real_features(args.points)
    print(f"features: {what}")
    for method in ["t-SNE"] + ([] if args.skip_umap else ["UMAP"]):
        t = time.perf_counter()
        projector.reduce(vecs, method, 2)
        first = time.perf_counter() - t
        t = time.perf_counter()
        projector.reduce(vecs, method, 2)
        print(f"{method} of {len(vecs):,} points, 2-D: {first:.1f} s first (UMAP: with numba's compilation), "
              f"{time.perf_counter() - t:.1f} s again")
    print(f"Projector page rerun with its result cached: {page_rerun():.2f} s")


def attribution_part() -> None:
    print("\n# Attribution (one 32x32 image)")
    im = load_image(samples()[0].path)
    for name in ("lenet5", "resnet_small"):
        loaded = loading.from_checkpoint(loading.shipped_checkpoints()[name], name)
        xin, _ = features.preprocess(im, 32, loaded.mean, loaded.std, 3)
        row = []
        for m in attribution.METHODS:
            s = timed(lambda m=m: attribution.attribute(loaded.model, xin, m, mean=loaded.mean, std=loaded.std))
            row.append(f"{m} {s:.3f}")
        print(f"{name}: " + ", ".join(row) + " (s)")
        t = time.perf_counter()
        res = attribution.sanity_check(loaded.model, xin, list(attribution.METHODS), mean=loaded.mean, std=loaded.std)
        print(f"{name}: full sanity check, 8 methods x {len(res.layers)} steps: {time.perf_counter() - t:.1f} s; "
              + ", ".join(f"{m} {'passes' if res.passes(m) else 'fails' if res.defined(m) else '-'} "
                          f"({res.rho[m][-1]:.2f})" for m in attribution.METHODS))


def fgsm_part() -> None:
    im = load_image(samples()[0].path)
    print("\n# FGSM (shipped LeNet5)")
    loaded = loading.from_checkpoint(loading.shipped_checkpoints()["lenet5"], "lenet5")
    xin, _ = features.preprocess(im, 32, loaded.mean, loaded.std, 3)
    px = adversarial.denormalise(xin[0], loaded.mean, loaded.std)
    one = timed(lambda: adversarial.fgsm(loaded.model, px, loaded.mean, loaded.std, 8), repeat=5)
    sweep = timed(lambda: adversarial.fgsm_sweep(loaded.model, px, loaded.mean, loaded.std, 32), repeat=5)
    pgd = timed(lambda: adversarial.pgd(loaded.model, px, loaded.mean, loaded.std, 8, 10), repeat=3)
    print(f"one FGSM attack: {1000 * one:.0f} ms; FGSM at ε = 0..32: {1000 * sweep:.0f} ms; "
          f"PGD, 10 steps: {1000 * pgd:.0f} ms")
    wall, cpu = fgsm_slider_rerun()
    print(f"the Attribution page's rerun for an ε slider move (AppTest): {1000 * wall:.0f} ms wall, "
          f"{1000 * cpu:.0f} ms CPU")


SANITY = """
import time, torch
from cnnviz.images import load_image, samples
from cnnviz.inspect import attribution, features, loading
im = load_image(samples()[0].path)
loaded = loading.from_checkpoint(loading.shipped_checkpoints()["resnet_small"], "resnet_small")
x, _ = features.preprocess(im, 32, loaded.mean, loaded.std, 3)
attribution.sanity_check(loaded.model, x, ["Grad-CAM"], mean=loaded.mean, std=loaded.std)
t = time.perf_counter()
attribution.sanity_check(loaded.model, x, list(attribution.METHODS), mean=loaded.mean, std=loaded.std)
print(time.perf_counter() - t)
"""
BUSY = "import torch\na = torch.randn(256, 256)\nwhile True:\n    a = (a @ a).tanh()\n"


def contention_part() -> None:
    """The ResNet-small sanity check in a fresh process beside two busy torch processes (what training
    runs are to the server), with OpenMP's default wait policy and with PASSIVE (app.py's)."""
    import signal
    import subprocess

    print("\n# Beside two busy torch processes (ResNet-small full sanity check, a fresh process each)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_WAIT_POLICY", None)
    busy = [subprocess.Popen([sys.executable, "-c", BUSY], start_new_session=True) for _ in range(2)]
    try:
        time.sleep(2)  # let them start spinning
        for policy in (None, "PASSIVE"):
            e = dict(env, **({"OMP_WAIT_POLICY": policy} if policy else {}))
            out = subprocess.run([sys.executable, "-c", SANITY], env=e, capture_output=True, text=True, timeout=900)
            secs = float(out.stdout.split()[-1]) if out.returncode == 0 else float("nan")
            print(f"OMP_WAIT_POLICY={policy or '(default)'}: {secs:.1f} s")
    finally:
        for p in busy:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


if __name__ == "__main__":
    main()
