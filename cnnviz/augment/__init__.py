"""Augmentation: one declarative spec per transform drives validation, widgets, torchvision v2
builds, exported code and the training-time batched path.

Modules:
- `specs`: the table of supported transforms (`SPECS`: parameters, ranges, defaults, docs).
- `pipeline`: `Pipeline` (validated JSON round-trip, `build()`, `to_code()`), presets, the
  per-step trace the studio draws. Importing this package does not import torch.
- `labels`: the rule for steps that can change an image's label (flips and quarter turns on
  handwritten digits): `label_hazards`, `hazard_line` (the studio's and Runs page's one line).
- `batch`: `BatchAugmenter`, a pipeline applied to a whole uint8 batch on its device (training;
  import it as `from cnnviz.augment.batch import BatchAugmenter`).
"""

from .pipeline import (MAX_JSON_CHARS, MAX_STEPS, PRESET_HELP, Pipeline, Step, TraceStep, apply_many,
                       parse_numbers, preset, preset_names, preview_input, resolve, spec_names, to_display, trace)
from .labels import LabelHazard, hazard_line, is_digit_classes, is_digit_dataset, label_hazards
from .specs import SPECS, Param, TransformSpec

__all__ = ["MAX_JSON_CHARS", "MAX_STEPS", "PRESET_HELP", "SPECS", "LabelHazard", "Param", "Pipeline", "Step",
           "TraceStep", "TransformSpec", "apply_many", "hazard_line", "is_digit_classes", "is_digit_dataset",
           "label_hazards", "parse_numbers", "preset", "preset_names", "preview_input", "resolve", "spec_names",
           "to_display", "trace"]
