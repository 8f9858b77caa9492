"""Augmentation: one declarative spec per transform drives validation, widgets, torchvision v2
builds, exported code and the training-time batched path.

Modules:
- `specs`: the table of supported transforms (`SPECS`: parameters, ranges, defaults, docs).
- `pipeline`: `Pipeline` (validated JSON round-trip, `build()`, `to_code()`), presets, the
  per-step trace the studio draws. Importing this package does not import torch.
- `batch`: `BatchAugmenter`, a pipeline applied to a whole uint8 batch on its device (training;
  import it as `from cnnviz.augment.batch import BatchAugmenter`).
"""

from .pipeline import (MAX_JSON_CHARS, MAX_STEPS, PRESET_HELP, Pipeline, Step, TraceStep, apply_many,
                       parse_numbers, preset, preset_names, preview_input, resolve, spec_names, to_display, trace)
from .specs import SPECS, Param, TransformSpec

__all__ = ["MAX_JSON_CHARS", "MAX_STEPS", "PRESET_HELP", "SPECS", "Param", "Pipeline", "Step", "TraceStep",
           "TransformSpec", "apply_many", "parse_numbers", "preset", "preset_names", "preview_input", "resolve",
           "spec_names", "to_display", "trace"]
