"""Training: a run from a config to a directory of metrics and checkpoints, and what reads it back.

Modules:
- `config`: `TrainConfig`, the single list of training settings (each field's help, choices and
  bounds as metadata: the CLI flags, the Train page form and sweeps are built from it), named presets
  (each carrying everything it sets, dataset included), lr schedules.
- `engine`: `fit(config)`, the training loop as named steps (set-up, epoch, evaluation,
  checkpoint, finish), yielding `Event`s; a run's files are written through `cnnviz.runs`.
- `diagnostics`: the memory line and the advice for out-of-memory and diverged runs.
- `device_data`: the dataset's uint8 tensors on the device, batches cut there, normalised there.
- `distributed`: torchrun ranks (DDP, rank-0 writes, all-reduced metrics).
- `evaluate`: predictions, confusion matrix, most confident mistakes of a trained run.
- `export`: a run as a standalone PyTorch script or a plain checkpoint.
- `bundle`: a run or checkpoint as a folder that runs anywhere: ONNX model (checked against PyTorch
  with onnxruntime), weights, labels.json, preprocess.json, README and `predict_script` copied in as a
  torch-free predict.py (`bundle_run`, `bundle_checkpoint`, `bundle_zip`, `BundleError`).
- `tensorboard`: TensorBoard event files per run: epoch/step scalars, HParams, confusion matrix,
  augmented samples (`write_run`, `LiveWriter` for a run while it trains).
- `scrub`: one layer's feature maps across a run's saved epochs.
"""

from .config import DEVICES, OPTIMIZERS, PRECISIONS, PRESETS, SCHEDULES, TrainConfig, lr_at, preset_config
from .diagnostics import memory_usage
from .engine import Event, fit

__all__ = ["DEVICES", "OPTIMIZERS", "PRECISIONS", "PRESETS", "SCHEDULES", "TrainConfig", "lr_at",
           "preset_config", "Event", "fit", "memory_usage"]
