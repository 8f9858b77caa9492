"""Datasets: one registry, one call (`load_dataset(spec, split)`), every source the same shape.

Modules:
- `datasets`: `load_dataset`, `ImageDataset` (uint8 (N, C, H, W), labels, classes, mean/std),
  spec parsing, the on-disk cache lookup, zip uploads.
- `registry`: the dataset kinds (`dataset_kind` decorator), `DatasetError`, progress reports.
- `shapes`: the built-in, offline `shapes` set, generated from a seed.
- `digits`: the built-in, offline `digits` set: 5,000 MNIST digits shipped in assets/digits/
  (a seeded, stratified 4,500 / 500 split; `CREDIT` says whose they are).
- `downloads`: CIFAR-10, MNIST, Fashion-MNIST through torchvision (download only when asked).
- `files`: `folder:PATH` and `zip:PATH` image trees, decoded within bounds (`cnnviz.limits`),
  `visitor_spec` (a browser's paths confined to the data roots); `batch_decode`: fast batched decoding
  with a pixel guard, large images alone at the size kept; `safezip`: hostile-zip-proof reading;
  `cache`: safetensors cache of decoded sets.
- `overview`: what the Datasets page shows (sample rows, class counts, mean/std vs tutorials).
"""

from .datasets import (SHAPES_TEST, SHAPES_TRAIN, SPLITS, DatasetError, ImageDataset, channel_stats,
                       check_dataset, dataset_choices, load_dataset, load_dataset_from_zip_bytes, parse_spec,
                       source_key, visitor_spec)

__all__ = ["SHAPES_TEST", "SHAPES_TRAIN", "SPLITS", "DatasetError", "ImageDataset", "channel_stats",
           "check_dataset", "dataset_choices", "load_dataset", "load_dataset_from_zip_bytes", "parse_spec", "source_key",
           "visitor_spec"]
