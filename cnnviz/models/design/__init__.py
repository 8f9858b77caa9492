"""Designs: your own CNN as a validated JSON document, checked layer by layer, built, and written as code.

A design is `{"name": ..., "input": [C, H, W], "layers": [{"type": "conv2d", "out_channels": 16,
"kernel_size": 5}, ...]}`. Types are the lower-case PyTorch class names (`LAYERS`) plus `resblock`,
the tutorial's ResBlk; keys are PyTorch's own argument names. Input sizes are inferred: `in_channels`
(conv2d), `num_features` (batchnorm2d) and `in_features` (linear) may be left out, and when given they
are checked against what arrives. `out_channels` / `out_features` may be the string `"classes"`: the
dataset's class count. Sizes are single integers and the input is square, as everywhere in cnnviz.

Modules, each building on the ones before it:
- `schema`: the vocabulary: limits (`MAX_LAYERS`, `MAX_PARAMS`, `MAX_FLOPS`, ...), `Arg`, `LayerType`,
  and what a shape rule takes and gives (`Ctx`, `Step`, `Stop`, `Fix`), `Sym` / `Call` (one call per
  layer that both builds the module and prints its code).
- `layers`: the table `LAYERS`, each layer type declared once: its arguments (kinds, defaults, bounds),
  its module, its shape rule (using `cnnviz.ops.conv.output_size` / `cnnviz.ops.pool.output_size`);
  `new_layer`.
- `parsing`: `Design` (the validated document, its JSON and hash) and `parse` (one-line `ValueError`s;
  JSON read with `json.loads`, never run).
- `shapes`: `check(spec, num_classes, in_channels)` -> `Analysis`: shapes, parameters and FLOPs per layer
  (1 multiply-add = 2 FLOPs, as `cnnviz.inspect.summary` counts them), the caps, the first problem with
  its fixes; `activation_memory(analysis, batch_size)`: float32 bytes of every layer's output.
- `building`: `DesignNet` / `from_design` (layers named conv1, pool1, ..., fc2).
- `codegen`: `to_code` (the same model as plain PyTorch source), `class_name`.
- `presets`: `PRESETS`, `preset`, and registry models read back as designs (`from_registry`,
  `plain_stack_models`).
- `storage`: design files under `$CNNVIZ_DESIGNS` (default `./designs`): `save`, `load_file`,
  `design_names`, `resolve_path`; `design:NAME.json` names (`PREFIX`, `is_design_name`, `stamp`).
- `hooks`: designs as models elsewhere: the registry's "design:" prefix (`model_info`, registered on
  import) and checkpoints that record their design (`checkpoint_meta`, `info_for_checkpoint`,
  `create_for_checkpoint`); `create("design:x.json", num_classes, in_channels)` builds the design for
  the dataset's channel count, like the registry models do.
"""

from .schema import (CLASSES, MAX_FLOPS, MAX_INPUT_CHANNELS, MAX_INPUT_SIZE, MAX_LAYERS, MAX_PARAMS, Arg, Fix,
                     LayerType)
from .layers import LAYERS, new_layer
from .parsing import Design, parse
from .shapes import ActivationMemory, Analysis, LayerRow, Problem, activation_memory, check
from .building import DesignNet, from_design
from .codegen import class_name, to_code
from .presets import PRESET_HELP, PRESETS, from_registry, plain_stack_models, preset
from .storage import (PREFIX, design_names, designs_root, file_name, is_design_name, load_file, resolve_path, save,
                      stamp)
from .hooks import checkpoint_meta, create_for_checkpoint, info_for_checkpoint, model_info

__all__ = ["PREFIX", "CLASSES", "MAX_LAYERS", "MAX_PARAMS", "MAX_FLOPS", "MAX_INPUT_CHANNELS", "MAX_INPUT_SIZE",
           "LAYERS", "Arg", "LayerType", "Design", "Analysis", "LayerRow", "Problem", "Fix", "ActivationMemory",
           "parse", "check", "activation_memory", "from_design", "to_code", "class_name", "new_layer", "preset",
           "PRESETS", "PRESET_HELP", "from_registry", "plain_stack_models", "designs_root", "design_names",
           "resolve_path", "load_file", "stamp", "file_name", "save", "is_design_name", "model_info",
           "checkpoint_meta", "info_for_checkpoint", "create_for_checkpoint", "DesignNet"]
