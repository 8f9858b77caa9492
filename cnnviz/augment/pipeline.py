"""Augmentation pipelines: a validated JSON format, presets, torchvision v2 builds and code export.

A `Pipeline` is a list of `Step(name, params)`; names and parameters come from the table in
`cnnviz.augment.specs`. Everything from JSON is checked against that table (types, ranges,
cross-parameter rules) and is never evaluated: `build()` instantiates `torchvision.transforms.v2`
classes looked up by name in a fixed allow-list, and `to_code()` prints the same calls with
`repr()` of the validated numbers, strings and lists.

Images and dtypes (decided once, for PIL images and tensors alike): `build()` returns
`v2.Compose([v2.ToImage(), <steps>, v2.ToDtype(torch.float32, scale=True)])`. Steps run on a
uint8 tv_tensors.Image until the first step that needs floats (RandomErasing, Normalize), where the
ToDtype is placed instead of at the end. So the output is always a float32 (C, H, W) tensor, in
[0, 1] unless the pipeline has a Normalize. Batch-level steps (MixUp, CutMix) are not part of
`build()`; `build_batch(num_classes)` returns them (a RandomChoice when both are present), and the
training path applies them after all per-image steps (`cnnviz.augment.batch`).

torch is imported lazily so that validation (and `import cnnviz`) stay torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .specs import SPECS, Call, Param, TransformSpec, check_value

MAX_STEPS = 32
MAX_JSON_CHARS = 100_000
_ALLOWED_FNS = set(SPECS) | {"RandomChoice", "AutoAugmentPolicy", "Compose", "ToImage", "ToDtype"}

__all__ = ["Step", "Pipeline", "SPECS", "Param", "TransformSpec", "preset_names", "preset", "resolve",
           "spec_names", "TraceStep", "trace", "apply_many", "to_display", "parse_numbers", "preview_input",
           "PRESET_HELP"]


@dataclass
class Step:
    """One pipeline step: a spec name and its full, validated parameters."""

    name: str
    params: dict = field(default_factory=dict)


def spec_names() -> list[str]:
    """All transform names the studio supports, in table order."""
    return list(SPECS)


def _validate_step(i: int, raw: Any) -> Step:
    where = f"step {i + 1}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object like {{\"name\": ..., \"params\": {{...}}}}; got {raw!r:.60}.")
    extra = set(raw) - {"name", "params"}
    if extra:
        raise ValueError(f"{where} has unknown keys {sorted(extra)}; only 'name' and 'params' are allowed.")
    name = raw.get("name")
    if not isinstance(name, str) or name not in SPECS:
        raise ValueError(f"{where}: unknown transform {name!r:.60}. Known: {', '.join(SPECS)}.")
    spec = SPECS[name]
    params = raw.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError(f"{where} ({name}): 'params' must be an object; got {params!r:.60}.")
    known = {p.name for p in spec.params}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"{where} ({name}): unknown parameter(s) {sorted(unknown)}; "
                         f"known: {', '.join(sorted(known)) or 'none'}.")
    out = {}
    for p in spec.params:
        v = params.get(p.name, p.default)
        try:
            out[p.name] = check_value(name, p, v)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if spec.check:
        msg = spec.check(out)
        if msg:
            raise ValueError(f"{where}: {msg}")
    return Step(name, out)


class Pipeline:
    """An ordered list of augmentation steps (see the module docstring for the contract)."""

    def __init__(self, steps: list[Step] | None = None) -> None:
        self.steps: list[Step] = list(steps or [])

    def __repr__(self) -> str:
        return f"Pipeline({[s.name for s in self.steps]})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.to_dict() == other.to_dict()

    # ---- JSON -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> "Pipeline":
        """Validate a parsed JSON object; ValueError with a readable message on anything bad."""
        if not isinstance(data, dict):
            raise ValueError(f"A pipeline must be a JSON object {{\"steps\": [...]}}; got {type(data).__name__}.")
        extra = set(data) - {"steps"}
        if extra:
            raise ValueError(f"Unknown top-level key(s) {sorted(extra)}; a pipeline has only 'steps'.")
        steps = data.get("steps")
        if not isinstance(steps, list):
            raise ValueError("A pipeline needs \"steps\": a list of {\"name\": ..., \"params\": {...}} objects.")
        if len(steps) > MAX_STEPS:
            raise ValueError(f"Too many steps ({len(steps)}); at most {MAX_STEPS}.")
        return cls([_validate_step(i, s) for i, s in enumerate(steps)])

    @classmethod
    def from_json(cls, text: str) -> "Pipeline":
        """Parse and validate pipeline JSON text."""
        if not isinstance(text, str):
            raise ValueError("Pipeline JSON must be text.")
        if len(text) > MAX_JSON_CHARS:
            raise ValueError(f"Pipeline JSON is too long ({len(text):,} characters; at most {MAX_JSON_CHARS:,}).")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
        except RecursionError:
            raise ValueError("Not valid JSON: nested too deeply.") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        return {"steps": [{"name": s.name, "params": dict(s.params)} for s in self.steps]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    # ---- structure ---------------------------------------------------------------------------
    @property
    def image_steps(self) -> list[Step]:
        return [s for s in self.steps if not SPECS[s.name].batch_level]

    @property
    def batch_steps(self) -> list[Step]:
        return [s for s in self.steps if SPECS[s.name].batch_level]

    @property
    def normalizes(self) -> bool:
        return any(s.name == "Normalize" for s in self.steps)

    def calls(self) -> list[Call]:
        """The per-image Call tree (ToImage, steps, one ToDtype) that build() and to_code() share."""
        out: list[Call] = [Call("ToImage")]
        to_float = Call("ToDtype", args=(_Raw("torch.float32"),), kwargs={"scale": True})
        floated = False
        for s in self.image_steps:
            spec = SPECS[s.name]
            if spec.needs_float and not floated:
                out.append(to_float)
                floated = True
            out.append(spec.calls(s.params))
        if not floated:
            out.append(to_float)
        return out

    def batch_call(self, num_classes: int) -> Call | None:
        steps = self.batch_steps
        if not steps:
            return None
        calls = [Call(s.name, kwargs={**s.params, "num_classes": int(num_classes)}) for s in steps]
        # MixUp and CutMix both need integer labels, so they can't be chained: pick one per batch.
        return calls[0] if len(calls) == 1 else Call("RandomChoice", args=(calls,))

    # ---- build / code ------------------------------------------------------------------------
    def build(self):
        """A torchvision v2.Compose for single images (PIL or tensor) -> float32 tensor."""
        from torchvision.transforms import v2
        return v2.Compose([_instantiate(c) for c in self.calls()])

    def build_batch(self, num_classes: int):
        """The batch-level transform (MixUp/CutMix, called as t(images, labels)) or None."""
        c = self.batch_call(num_classes)
        return None if c is None else _instantiate(c)

    def to_code(self, num_classes: int | None = None) -> str:
        """Runnable Python defining `transform = v2.Compose([...])` (and `batch_transform` if any)."""
        lines = ["import torch", "from torchvision.transforms import v2", "",
                 "# Per-image pipeline: PIL image or uint8 tensor in, float32 tensor out.",
                 "transform = v2.Compose(["]
        lines += [f"    {_code(c)}," for c in self.calls()]
        lines.append("])")
        if self.batch_steps:
            k = num_classes if num_classes is not None else 10
            lines += ["", f"NUM_CLASSES = {int(k)}  # set to your dataset's number of classes",
                      "# Batch-level step: call as images, labels = batch_transform(images, labels)",
                      "# on a float batch (B, C, H, W) and int64 labels (B,), after `transform`.",
                      f"batch_transform = {_code(self.batch_call(k), num_classes_name=True)}"]
        return "\n".join(lines) + "\n"


class _Raw(str):
    """A fixed code token (never from user input), e.g. torch.float32."""


def _resolve_arg(v: Any) -> Any:
    import torch
    if isinstance(v, Call):
        return _instantiate(v)
    if isinstance(v, _Raw):
        assert v == "torch.float32"
        return torch.float32
    if isinstance(v, (list, tuple)):
        return [_resolve_arg(x) for x in v]
    return v


def _instantiate(c: Call):
    from torchvision.transforms import v2
    if c.fn not in _ALLOWED_FNS:  # pragma: no cover - table bug
        raise ValueError(f"{c.fn} is not an allowed transform")
    return getattr(v2, c.fn)(*[_resolve_arg(a) for a in c.args],
                             **{k: _resolve_arg(v) for k, v in c.kwargs.items()})


def _code(v: Any, num_classes_name: bool = False) -> str:
    if isinstance(v, Call):
        parts = [_code(a, num_classes_name) for a in v.args]
        for k, x in v.kwargs.items():
            parts.append(f"{k}=NUM_CLASSES" if (k == "num_classes" and num_classes_name) else f"{k}={_code(x)}")
        return f"v2.{v.fn}({', '.join(parts)})"
    if isinstance(v, _Raw):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_code(x, num_classes_name) for x in v) + "]"
    if v is None or isinstance(v, (bool, int, float, str)):
        return repr(v)
    raise TypeError(f"cannot emit {type(v).__name__}")  # pragma: no cover


# ---- presets -----------------------------------------------------------------------------------
_PRESETS: dict[str, list[tuple[str, dict]]] = {
    "none": [],
    "tutorial-mnist": [
        ("RandomHorizontalFlip", {}), ("RandomVerticalFlip", {}),
        ("RandomRotation", {"degrees": 15.0}), ("RandomDiscreteRotation", {"angles": [90, 180, 270]}),
        ("Resize", {"size": 32}), ("RandomCrop", {"size": 28, "padding": 0}),
    ],
    "digit-safe": [
        ("RandomAffine", {"degrees": 10.0, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "shear": None,
                          "interpolation": "bilinear", "fill": 0}),
    ],
    "cifar-standard": [("RandomCrop", {"size": 32, "padding": 4}), ("RandomHorizontalFlip", {})],
    "autoaugment": [("RandomCrop", {"size": 32, "padding": 4}), ("RandomHorizontalFlip", {}),
                    ("AutoAugment", {"policy": "cifar10"})],
    "randaugment": [("RandomCrop", {"size": 32, "padding": 4}), ("RandomHorizontalFlip", {}),
                    ("RandAugment", {"num_ops": 2, "magnitude": 9})],
}
PRESET_HELP = {
    "none": "No augmentation: images are only converted to float tensors.",
    "tutorial-mnist": "The tutorial's MNIST pipeline: flips, rotation by up to 15 degrees, rotation by one of "
                      "90/180/270, resize to 32, random 28x28 crop.",
    "digit-safe": "For handwritten digits: one RandomAffine that turns by up to 10 degrees, shifts by up to 10% "
                  "and zooms by 0.9-1.1 (bilinear, black fill). No flips and no quarter turns: those change "
                  "which digit it is (a 6 upside down is a 9).",
    "cifar-standard": "The classic CIFAR recipe: pad 4 pixels, random 32x32 crop, horizontal flip.",
    "autoaugment": "CIFAR standard + AutoAugment with the CIFAR-10 policy.",
    "randaugment": "CIFAR standard + RandAugment (2 operations at magnitude 9).",
}


def preset_names() -> list[str]:
    """The preset names, in display order."""
    return list(_PRESETS)


def preset(name: str) -> Pipeline:
    """A fresh Pipeline for a preset name; ValueError for unknown names."""
    if name not in _PRESETS:
        raise ValueError(f"Unknown augmentation preset {name!r:.60}; choose one of {', '.join(_PRESETS)}.")
    return Pipeline.from_dict({"steps": [{"name": n, "params": p} for n, p in _PRESETS[name]]})


def resolve(preset_or_json: str) -> Pipeline:
    """A preset name, pipeline JSON text, or a path to a .json file -> Pipeline (ValueError if bad)."""
    if not isinstance(preset_or_json, str):
        raise ValueError("augment must be a preset name, pipeline JSON, or a path to a .json file.")
    s = preset_or_json.strip()
    if s in _PRESETS:
        return preset(s)
    if s.startswith("{") or s.startswith("["):
        return Pipeline.from_json(s)
    if s.lower().endswith(".json"):
        path = Path(s).expanduser()
        if not path.is_file():
            raise ValueError(f"Augmentation file not found: {s}")
        if path.stat().st_size > MAX_JSON_CHARS * 4:
            raise ValueError(f"Augmentation file {s} is too large.")
        try:
            return Pipeline.from_json(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"Augmentation file {s} is not UTF-8 text.") from None
    raise ValueError(f"Unknown augmentation {s!r:.60}: use a preset ({', '.join(_PRESETS)}), "
                     "pipeline JSON, or a path to a .json file.")


# ---- applying, tracing and display (used by the page) -------------------------------------------
@dataclass
class TraceStep:
    """One column of the per-step strip: the label, the image after the step, what it drew."""

    label: str
    image: Any            # float32 tensor (C, H, W)
    drawn: dict           # parameters the step's random draw produced ({} if none / not random)
    normalized: bool = False  # True after a Normalize step (undo it for display)


def _plain(v: Any) -> Any:
    import torch
    if isinstance(v, torch.Tensor):
        if v.numel() <= 4:
            vals = [round(x, 3) if isinstance(x, float) else x for x in v.flatten().tolist()]
            return vals[0] if len(vals) == 1 else vals
        return f"tensor{tuple(v.shape)}"
    if isinstance(v, float):
        return round(v, 3)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _record(t, log: list) -> None:
    """Wrap a v2 transform instance so every make_params / policy-op draw is appended to log."""
    from torchvision.transforms.v2 import _auto_augment as aa
    if isinstance(t, aa._AutoAugmentBase):
        orig_op = t._apply_image_or_video_transform

        def op(image, transform_id, magnitude, **kw):
            log.append({"op": transform_id, "magnitude": round(float(magnitude), 3)})
            return orig_op(image, transform_id, magnitude, **kw)
        t._apply_image_or_video_transform = op
        return
    for child in getattr(t, "transforms", []) or []:
        _record(child, log)
    orig = t.make_params

    def make_params(flat_inputs):
        params = orig(flat_inputs)
        log.append({k: _plain(v) for k, v in params.items()})
        return params
    t.make_params = make_params


def _summarise(name: str, log: list[dict]) -> dict:
    if name in ("RandomHorizontalFlip", "RandomVerticalFlip", "RandomGrayscale"):
        return {"applied": bool(log)}
    if name == "RandomErasing":
        return {"applied": False} if not log else {"applied": True, **{k: log[0][k] for k in "ijhw"}}
    if name == "RandomDiscreteRotation":
        return {"angle": log[0]["angle"]} if log else {}
    if name in ("AutoAugment", "RandAugment", "TrivialAugmentWide"):
        return {"ops": [f"{d['op']} ({d['magnitude']:g})" for d in log] or ["none"]}
    if name == "ColorJitter" and log:
        d = dict(log[0])
        names = ["brightness", "contrast", "saturation", "hue"]
        d["order"] = [names[i] for i in d.pop("fn_idx", [])
                      if d.get(f"{names[i]}_factor") is not None] if isinstance(d.get("fn_idx"), list) else []
        return {k: v for k, v in d.items() if v is not None and v != []}
    if name == "RandomCrop" and log:
        return {"top": log[0]["top"], "left": log[0]["left"], "padding": log[0]["padding"]}
    if name == "RandomResizedCrop" and log:
        return {k: log[0][k] for k in ("top", "left", "height", "width") if k in log[0]}
    return log[0] if log else {}


def trace(pipeline: Pipeline, image: Any, seed: int) -> list[TraceStep]:
    """Run the pipeline one step at a time under `seed`, recording each step's output and draws.

    The draws are recorded from the real v2 transforms (their make_params / policy-op calls), not
    re-implemented, and the last image equals `pipeline.build()(image)` under the same seed.
    """
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        calls = pipeline.calls()
        labels = ["original"]
        names: list[str | None] = [None]
        i = 0
        for c in calls[1:]:
            if c.fn == "ToDtype":
                labels.append("to float")
                names.append(None)
            else:
                step = pipeline.image_steps[i]
                labels.append(f"{i + 1}. {step.name}")
                names.append(step.name)
                i += 1
        transforms = [_instantiate(c) for c in calls]
        x = transforms[0](image)
        out = [TraceStep("original", x.as_subclass(torch.Tensor).clone(), {})]
        normed = False
        for t, label, name in zip(transforms[1:], labels[1:], names[1:]):
            log: list[dict] = []
            _record(t, log)
            x = t(x)
            normed = normed or name == "Normalize"
            out.append(TraceStep(label, x.as_subclass(torch.Tensor).clone(),
                                 _summarise(name, log) if name and SPECS[name].random else {}, normed))
    if out[-1].label == "to float" and len(out) > 2:
        out.pop()  # a trailing conversion shows nothing new
    return out


def apply_many(pipeline: Pipeline, images: list, seed: int, labels: list[int] | None = None,
               num_classes: int | None = None) -> tuple[list, Any]:
    """Augment each image (image i gets the i-th draw after `torch.manual_seed(seed)`).

    Returns (float tensors, soft labels or None). With MixUp/CutMix and labels given, the batch
    step is applied to the stacked results (needs equal sizes) and the mixed labels are returned.
    The global torch RNG is restored afterwards.
    """
    import torch
    t = pipeline.build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        outs = [t(im).as_subclass(torch.Tensor) for im in images]
        soft = None
        if pipeline.batch_steps and labels is not None and len(outs) > 1:
            k = num_classes or (max(labels) + 1)
            batch = torch.stack(outs)
            mixed, soft = pipeline.build_batch(k)(batch, torch.as_tensor(labels, dtype=torch.int64))
            outs = list(mixed.as_subclass(torch.Tensor))
    return outs, soft


def parse_numbers(text: str, integers: bool = False, max_items: int = 16) -> list:
    """'90, 180, 270' -> [90, 180, 270] (for list widgets); ValueError with a readable message."""
    parts = [t for t in str(text).replace(";", ",").replace(" ", ",").split(",") if t]
    if not parts:
        raise ValueError("Enter at least one number, separated by commas.")
    if len(parts) > max_items:
        raise ValueError(f"At most {max_items} numbers.")
    out: list = []
    for t in parts:
        try:
            v = int(t) if integers else float(t)
        except ValueError:
            raise ValueError(f"{t[:20]!r} is not a {'whole ' if integers else ''}number.") from None
        if not integers and v != v:
            raise ValueError("NaN is not allowed.")
        out.append(v)
    return out


def preview_input(im: Any, side: int | None):
    """The picture the preview augments: the PIL image centre-cropped to a square and resized to
    side x side (None: unchanged), so 32-pixel presets behave as they do on CIFAR-sized data."""
    from PIL import Image, ImageOps
    im = im.convert("RGB")
    if side is None:
        return im
    return ImageOps.fit(im, (int(side), int(side)), method=Image.Resampling.BICUBIC)


def to_display(pipeline: Pipeline, x: Any, normalized: bool | None = None):
    """A pipeline output tensor (C, H, W) -> PIL image, undoing Normalize if the pipeline has one.

    uint8 tensors are scaled to [0, 1]; `normalized` overrides whether to undo Normalize.
    """
    import torch
    from ..images.display import tensor_to_pil
    x = x.detach().as_subclass(torch.Tensor).cpu()
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    norm = [s for s in pipeline.image_steps if s.name == "Normalize"]
    if norm and (normalized is None or normalized):
        mean = torch.tensor(norm[-1].params["mean"]).view(-1, 1, 1)
        std = torch.tensor(norm[-1].params["std"]).view(-1, 1, 1)
        x = x * std + mean
    return tensor_to_pil(x)
