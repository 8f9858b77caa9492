"""Benchmark the Microscope's backend on the CPU: python bench/microscope.py [--dataset SPEC] [--repeat N]

Prints, nothing asserted (the issue's targets in brackets):
  * top-k exemplars: one layer's peak activations over the whole test split (10,000 CIFAR-10 images
    with the default dataset), the shipped LeNet5 (conv_unit.2) and ResNet-small (its last block):
    "first" = the batched pass with an empty cache (written to a temporary cache folder), "cached"
    = the same call again (a file read) [LeNet5 < 3 s first, < 0.3 s cached; ResNet-small < 20 s];
  * feature visualisation of one LeNet5 channel (conv_unit.2, channel 3), 256 steps [< 10 s];
  * the Filters and Weights views' rerun over 10 saved epochs of a ResNet-small run (10 checkpoints
    written to a temporary folder): loading them once, then per rerun the filter grid with one scale
    over all epochs, the weight histograms over epochs and the per-layer norms [< 1 s per rerun].
Times are the best of --repeat runs except "first" (a first time happens once).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench import timing  # noqa: E402
from cnnviz import data  # noqa: E402
from cnnviz.inspect import featurevis, microscope, topk, loading  # noqa: E402
from cnnviz.models.checkpoints import save_checkpoint  # noqa: E402


def _topk(name: str, layer: str, ds, repeat: int) -> None:
    loaded = loading.from_checkpoint(loading.shipped_checkpoints()[name], name)
    kw = dict(dataset_key=ds.spec, mean=loaded.mean, std=loaded.std, size=loaded.input_size,
              in_channels=loaded.in_channels, weights_key=f"bench-{name}")
    t = time.perf_counter()
    first = topk.cached_scores(loaded.model, ds.images, layer, **kw)
    first_s = time.perf_counter() - t
    cached = timing.best(lambda: topk.cached_scores(loaded.model, ds.images, layer, **kw), repeat)
    print(f"top-k {name} {layer}: {len(ds):,} images, batches of {first.batch}, {first.threads} thread(s): "
          f"first {first_s:.2f} s, "
          f"cached {cached * 1000:.1f} ms ({first.channels} channels)")


def _featurevis(repeat: int) -> None:
    loaded = loading.from_checkpoint(loading.shipped_checkpoints()["lenet5"], "lenet5")
    res = []

    def run():
        res.append(featurevis.visualise(loaded.model, ("channel", "conv_unit.2", 3), input_size=32, in_channels=3,
                                        mean=loaded.mean, std=loaded.std))

    t = timing.best(run, repeat, warmup=0)
    v = res[-1]
    print(f"feature visualisation LeNet5 conv_unit.2 channel 3, 256 steps: {t:.2f} s "
          f"(objective {v.start:.3g} -> {v.final:.3g})")


def _epochs(repeat: int) -> None:
    loaded = loading.from_checkpoint(loading.shipped_checkpoints()["resnet_small"], "resnet_small")
    state = loaded.model.state_dict()
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for e in range(1, 11):
            sd = {k: v + 0.01 * e * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
                  for k, v in state.items()}
            paths[e] = save_checkpoint(sd, Path(tmp) / f"epoch-{e:04d}.safetensors", {"model": "resnet_small"})
        t = time.perf_counter()
        states = microscope.epoch_states(paths)
        load_s = time.perf_counter() - t
        keys = microscope.layer_weight_keys(loaded.model)
        first_conv = microscope.conv_layers(loaded.model)[0].name + ".weight"
        deep_conv = microscope.conv_layers(loaded.model)[-2].name + ".weight"

        def rerun():
            for key in (first_conv, deep_conv):
                scale = microscope.shared_scale([s[key] for s in states.values()])
                microscope.filter_grid(states[10][key], scale=scale)
                microscope.weight_histograms({e: s[key] for e, s in states.items()})
            microscope.checkpoint_norms(states, keys)

        t = timing.best(rerun, repeat)
    print(f"filters + histograms + norms over 10 saved epochs (ResNet-small, first and a deep conv): "
          f"load the 10 checkpoints once {load_s:.2f} s, then per rerun {t * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="folder:" + str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"),
                    help="test split for top-k (default: the real CIFAR-10 copy; 'shapes' works offline)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["CNNVIZ_CACHE"] = cache  # an empty cache: "first" really is the first time
        try:
            ds = data.load_dataset(args.dataset, "test")
        except (ValueError, FileNotFoundError, OSError) as exc:
            print(f"top-k skipped: can't load {args.dataset}: {exc}")
            ds = None
        if ds is not None:
            _topk("lenet5", "conv_unit.2", ds, args.repeat)
            _topk("resnet_small", "layers.2.0", ds, args.repeat)
    _featurevis(args.repeat)
    _epochs(args.repeat)


if __name__ == "__main__":
    main()
