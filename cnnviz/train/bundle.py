"""A trained model as a folder that runs anywhere: ONNX model, weights, labels, preprocessing, a
torch-free `predict.py` and a README.

    bundle_run(run_dir, out_dir, epoch=None, force=False)   # a training run's weights
    bundle_checkpoint(path, out_dir, force=False)           # a .safetensors checkpoint (shipped ones)
    bundle_zip(source)                                      # the same folder as zip bytes (pages)

The bundle holds `model.onnx` (fp32, dynamic batch, opset `ONNX_OPSET`), `model.safetensors`
(the weights with cnnviz's metadata, as `export_checkpoint` writes them), `labels.json` (class names
in output order), `preprocess.json` (what the model expects and how an image becomes its input),
`predict.py` (needs onnxruntime, numpy and pillow only) and `README.md`.

Exporter: `torch.onnx.export(..., dynamo=True)`, the torch.export-based exporter (it needs
onnxscript). It is torch's default and maintained one; the TorchScript exporter (`dynamo=False`)
is deprecated and refuses VGG and AlexNet below 224 px (adaptive_avg_pool2d with an output size
that does not divide the input), while the dynamo exporter exports every registry model at any size
we tried.

The export checks itself before anything is written where the user asked: onnxruntime runs the
ONNX model on a fixed batch (up to `CHECK_TEST_IMAGES` of the run's own test images when its dataset
loads here, plus the six sample images of assets/samples prepared as the Feature maps page prepares
them) and the largest logit difference to PyTorch must be at most `MAX_LOGIT_DIFF`; otherwise
`BundleError`. Files are written into a temporary folder beside the target and renamed into place,
so a refusal or a crash leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..runs import METRICS_FILE, read_run

ONNX_OPSET = 20
MAX_LOGIT_DIFF = 1e-4
CHECK_TEST_IMAGES = 32
INPUT_NAME, OUTPUT_NAME = "input", "logits"
MARKER = ".cnnviz-bundle"  # written into every bundle: `--force` replaces only a folder that holds it
MARKER_TEXT = '{"format": "cnnviz-bundle-1"}\n'
FILES = ("model.onnx", "model.safetensors", "labels.json", "preprocess.json", "predict.py", "README.md", MARKER)
PREDICT_SCRIPT = Path(__file__).with_name("predict_script.py")
RESIZE = {"mode": "center-crop-resize", "interpolation": "bicubic", "centering": [0.5, 0.5]}


class BundleError(ValueError):
    """The bundle could not be made; the message is one line for the user."""


@dataclass
class BundleSource:
    """Everything a bundle is made of: the model and what describes it."""

    model: nn.Module
    name: str
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    in_channels: int
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    label: str                       # "run 2026...-lenet5-shapes-ab12, epoch 3" / "lenet5-cifar10.safetensors"
    dataset: str = ""
    epoch: int | None = None
    epochs: int | None = None        # epochs the run was configured for
    test_acc: float | None = None
    notes: list[str] = field(default_factory=list)
    protect: list[Path] = field(default_factory=list)   # never replaced by --force (the run, the checkpoint)


@dataclass
class BundleResult:
    """What was written and how the ONNX check went."""

    path: Path
    max_diff: float
    n_checked: int
    checked_on: str
    top1_agree: int
    opset: int = ONNX_OPSET
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"bundle": str(self.path), "files": list(FILES), "opset": self.opset,
                "max_logit_diff": self.max_diff, "checked_images": self.n_checked,
                "checked_on": self.checked_on, "top1_agree": self.top1_agree, "notes": self.notes}


# ----------------------------------------------------------------------------- sources

def _from_checkpoint_bytes(raw: bytes, label: str, fallback_model: str = "lenet5") -> BundleSource:
    from ..inspect import loading
    from ..models.checkpoints import CheckpointError, load_checkpoint, nonfinite_keys

    try:
        ckpt = load_checkpoint(raw)
        loaded = loading.from_checkpoint(raw, fallback_model, label=label)
    except CheckpointError as exc:
        raise BundleError(str(exc)) from None
    bad = nonfinite_keys(ckpt.state_dict)
    if bad:
        raise BundleError(f"{label}: {len(bad)} weight tensor(s) hold NaN or infinity (e.g. {bad[0]}): "
                          "the run diverged, there is no model worth exporting.")
    meta = dict(ckpt.meta)
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    epoch = meta.get("epoch")
    return BundleSource(
        model=loaded.model, name=loaded.name, classes=list(loaded.classes), mean=tuple(loaded.mean),
        std=tuple(loaded.std), input_size=int(loaded.input_size), in_channels=int(loaded.in_channels),
        state_dict=ckpt.state_dict, meta=meta, label=label, dataset=str(meta.get("dataset") or ""),
        epoch=int(epoch) if epoch is not None else None,
        epochs=int(cfg["epochs"]) if cfg.get("epochs") is not None else None,
        test_acc=metrics.get("test_acc"), notes=list(loaded.warnings))


def source_from_run(run_dir: Path, epoch: int | None = None) -> BundleSource:
    """The weights of `run_dir` at `epoch` (default: the newest). A run still training gives its
    last checkpoint, with a note saying so."""
    run_dir = Path(run_dir)
    try:
        run = read_run(run_dir)
    except FileNotFoundError as exc:
        raise BundleError(str(exc)) from None
    if not run.config and not (run_dir / METRICS_FILE).is_file():
        raise BundleError(f"{run_dir} is not a training run (no config.json).")
    if epoch is None:
        path = run.last_checkpoint or (run.checkpoints[max(run.checkpoints)] if run.checkpoints else None)
        if path is None:
            raise BundleError(f"Run {run.run_id} has no checkpoint yet: nothing to export "
                              "(one is written at the end of each epoch).")
    else:
        path = run.checkpoints.get(int(epoch))
        if path is None:
            kept = ", ".join(map(str, run.checkpoints)) or "none"
            raise BundleError(f"Run {run.run_id} kept no checkpoint for epoch {epoch} (kept epochs: {kept}).")
    try:
        raw = path.read_bytes()  # once: a run still training may replace the file meanwhile
    except OSError as exc:
        raise BundleError(f"Can't read {path}: {exc.strerror or exc}.") from None
    src = _from_checkpoint_bytes(raw, f"run {run.run_id}", run.config.get("model") or "lenet5")
    src.label = f"run {run.run_id}" + (f", epoch {src.epoch}" if src.epoch is not None else "")
    src.protect = [run_dir]
    src.dataset = src.dataset or str(run.config.get("dataset", ""))
    src.epochs = int(run.config.get("epochs") or src.epochs or 0) or None
    final = next((e for e in reversed(run.epochs) if int(e.get("epoch", 0)) == (src.epoch or 0)), None)
    if final is not None and final.get("test_acc") is not None:
        src.test_acc = float(final["test_acc"])
        src.meta["metrics"] = {k: final[k] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                                                      "images_per_s", "elapsed_s") if k in final}
    if run.status in ("running", "starting"):
        src.notes.append(f"run {run.run_id} is still training: exported its last checkpoint "
                         f"(epoch {src.epoch if src.epoch is not None else '?'}).")
    return src


def source_from_checkpoint(path: Path) -> BundleSource:
    """A .safetensors (or weights-only .pt) checkpoint with cnnviz metadata, e.g. assets/checkpoints/."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"No checkpoint at {path}.")
    src = _from_checkpoint_bytes(path.read_bytes(), path.name)
    src.protect = [path]
    side = path.with_suffix(".json")  # export_checkpoint's sidecar: config, final metrics
    if src.test_acc is None and side.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            info = json.loads(side.read_text())
            src.test_acc = (info.get("final_metrics") or {}).get("test_acc")
    return src


# ----------------------------------------------------------------------------- ONNX export and check

def _layer_of(model: nn.Module, example: torch.Tensor, op: str) -> str:
    """' in layer `features.3` (Odd)' for the first module whose traced graph calls `op`, else ''."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            ep = torch.export.export(model, (example,), strict=False)
            graphs = [ep.graph]
            with contextlib.suppress(Exception):
                graphs.append(ep.run_decompositions().graph)
    except Exception:  # noqa: BLE001 - only a hint for the message
        return ""
    short = op.removeprefix("aten.")
    for graph in graphs:
        for node in graph.nodes:
            if node.op == "call_function" and str(node.target).split(".")[:2] == ["aten", short.split(".")[0]]:
                stack = node.meta.get("nn_module_stack") or {}
                if stack:
                    path, kind = list(stack.values())[-1]
                    kind = str(kind).rsplit(".", 1)[-1]
                    return f" in layer `{path}` ({kind})" if path else f" in the model's own forward ({kind})"
    return ""


def export_onnx(model: nn.Module, path: Path, example: torch.Tensor, name: str = "the model",
                opset: int = ONNX_OPSET) -> None:
    """Export `model` (eval, fp32, CPU) to `path` with a dynamic batch dimension.

    BundleError naming the operator (and the layer calling it, where it can be found) when the
    exporter can't translate the model."""
    model = model.to("cpu", torch.float32).eval()
    example = example.to("cpu", torch.float32)
    batch = torch.export.Dim("batch", min=1)
    log = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), None, dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                                        opset_version=opset, external_data=False, verbose=False, optimize=True)
            program.save(str(path), external_data=False)
    except ImportError as exc:
        raise BundleError(f"ONNX export needs the '{exc.name or 'onnxscript'}' package: pip install onnx "
                          "onnxscript onnxruntime (they are in requirements.txt).") from None
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds; the message names the op
        text = "\n".join(filter(None, [str(exc)] + [str(c) for c in _causes(exc)]))
        m = re.search(r"op='(aten\.[\w.]+)'", text) or re.search(r"torch\.ops\.(aten\.\w+)", text)
        if m:
            op = m.group(1).removesuffix(".default")
            raise BundleError(f"{name} cannot be exported to ONNX: operator {op}{_layer_of(model, example, op)} "
                              f"has no ONNX translation (torch {torch.__version__.split('+')[0]}, "
                              f"opset {opset}).") from None
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
        raise BundleError(f"{name} cannot be exported to ONNX: {first[:300]}") from None


def _sci(x: float) -> str:
    """1e-4 as '1e-4' (not '0.0001' or '1e-04')."""
    mant, _, exp = f"{x:.0e}".partition("e")
    return f"{mant}e{int(exp)}"


def _causes(exc: BaseException) -> list[BaseException]:
    out, seen = [], {id(exc)}
    cur = exc.__cause__ or exc.__context__
    while cur is not None and id(cur) not in seen:
        out.append(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return out


def run_onnx(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of the ONNX model for the float32 batch `x`, with onnxruntime on the CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def check_onnx(onnx_path: Path, model: nn.Module, x: torch.Tensor, tol: float = MAX_LOGIT_DIFF
               ) -> tuple[float, int]:
    """Run the ONNX file with onnxruntime and `model` with PyTorch on `x`: (largest logit
    difference, how many top-1 classes agree). BundleError when the difference exceeds `tol`."""
    model = model.to("cpu", torch.float32).eval()
    with torch.no_grad():
        ref = model(x.to("cpu", torch.float32)).float().numpy()
    try:
        got = run_onnx(onnx_path, x.numpy())
    except ImportError:
        raise BundleError("The ONNX check needs onnxruntime: pip install onnxruntime (it is in "
                          "requirements.txt).") from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        raise BundleError(f"ONNX check failed: onnxruntime can't run the exported model "
                          f"({str(exc).splitlines()[0][:200]}).") from None
    if got.shape != ref.shape:
        raise BundleError(f"ONNX check failed: the ONNX model gives shape {got.shape}, PyTorch {ref.shape}.")
    diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))) if ref.size else 0.0
    agree = int((got.argmax(1) == ref.argmax(1)).sum())
    if not np.isfinite(diff) or diff > tol:
        raise BundleError(f"ONNX check failed: the largest logit difference between onnxruntime and PyTorch is "
                          f"{diff:.3g} on {len(ref)} images, above the {_sci(tol)} allowed; nothing was written.")
    return diff, agree


def check_batch(src: BundleSource, n_test: int = CHECK_TEST_IMAGES) -> tuple[torch.Tensor, str]:
    """The fixed batch the export is checked on, and what it holds.

    Up to `n_test` of the run's own test images (evenly spread, prepared as in training's test pass)
    when its dataset loads here, then the sample images of assets/samples prepared as the Feature
    maps page prepares an upload (centre crop, bicubic resize, normalise)."""
    from ..images import load_image, samples
    from ..inspect.features import preprocess
    from .evaluate import prepare_inputs, run_test_indices

    parts, what = [], []
    if src.dataset:
        try:
            from ..data import load_dataset

            ds = load_dataset(src.dataset, "test")
            cfg = src.meta.get("config") if isinstance(src.meta.get("config"), dict) else {}
            idx = run_test_indices(len(ds.labels), cfg.get("limit_test"), int(cfg.get("seed") or 0))
            pick = idx[np.linspace(0, len(idx) - 1, num=min(n_test, len(idx))).round().astype(int)] if len(idx) else idx
            if len(pick) and int(ds.images.shape[1]) == src.in_channels:
                imgs = ds.images.index_select(0, torch.from_numpy(np.asarray(pick, dtype=np.int64)))
                parts.append(prepare_inputs(imgs, src.mean, src.std, src.input_size))
                what.append(f"{len(pick)} test images of {src.dataset}")
        except (ValueError, OSError, RuntimeError) as exc:
            reason = (str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__).rstrip(". ")
            src.notes.append(f"dataset {src.dataset!r} not available here ({reason}): checked on the sample "
                             "images only")
    sample_list = samples()
    for s in sample_list:
        x, _ = preprocess(load_image(s.path), src.input_size, src.mean, src.std, src.in_channels)
        parts.append(x)
    what.append(f"the {len(sample_list)} sample images ({', '.join(s.key for s in sample_list)})")
    return torch.cat(parts).float().contiguous(), " and ".join(what)


# ----------------------------------------------------------------------------- the files

def preprocess_spec(src: BundleSource) -> dict:
    """preprocess.json: what the model expects and how an image becomes its input."""
    gray = src.in_channels == 1
    return {
        "format": "cnnviz-preprocess-1",
        "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32", "batch": "dynamic",
                  "channels": src.in_channels, "height": src.input_size, "width": src.input_size},
        "output": {"name": OUTPUT_NAME, "meaning": "one raw score (logit) per class, in labels.json order; "
                                                   "softmax gives probabilities"},
        "color": "grayscale" if gray else "RGB",
        "decode": ("EXIF orientation applied; first frame of animated/multi-page files; palette, CMYK, 1-bit, "
                   "16/32-bit and float images converted to RGB (high bit depths rescaled by their own range "
                   "to 0-255); transparent pixels composited over the background colour"),
        "background": [255, 255, 255],
        "resize": {**RESIZE, "how": f"centre-crop to the largest square, then resize to "
                                    f"{src.input_size}x{src.input_size} (Pillow ImageOps.fit, bicubic)"},
        "grayscale": ("Pillow convert('L'): L = R*299/1000 + G*587/1000 + B*114/1000, after the resize"
                      if gray else None),
        "scale": "pixel / 255 (float32)",
        "mean": [float(v) for v in src.mean][:src.in_channels],
        "std": [float(v) for v in src.std][:src.in_channels],
        "formula": "x[c] = (pixel[c] / 255 - mean[c]) / std[c]",
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    from .. import __version__

    out = {"cnnviz": __version__, "python": platform.python_version()}
    for pkg in ("torch", "torchvision", "onnx", "onnxscript", "onnxruntime", "numpy", "pillow", "safetensors"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def _readme(src: BundleSource, result: BundleResult, spec: dict) -> str:
    from ..inspect.loading import dataset_label

    acc = f"{100 * src.test_acc:.2f}%" if isinstance(src.test_acc, (int, float)) else "not recorded"
    ep = "?" if src.epoch is None else str(src.epoch)
    of = f" of {src.epochs}" if src.epochs else ""
    data = dataset_label(src.dataset) if src.dataset else "an unnamed dataset"
    v = _versions()
    params = sum(p.numel() for p in src.model.parameters())
    chans = "1 channel (grayscale)" if src.in_channels == 1 else f"{src.in_channels} channels (RGB)"
    lines = [
        f"# {src.name} on {data}: a cnnviz bundle",
        "",
        f"`{src.name}` ({params:,} parameters) trained by cnnviz on `{src.dataset or '?'}`, from {src.label}.",
        "",
        "| | |", "| --- | --- |",
        f"| model | `{src.name}` |",
        f"| dataset | `{src.dataset or '?'}` |",
        f"| epochs | {ep}{of} |",
        f"| test accuracy | {acc} |",
        f"| classes | {len(src.classes)}: {', '.join(src.classes[:12])}{' ...' if len(src.classes) > 12 else ''} |",
        "",
        "## Files", "",
        "| file | what |", "| --- | --- |",
        f"| `model.onnx` | the model, fp32, ONNX opset {result.opset}, input `{INPUT_NAME}` "
        f"(batch, {src.in_channels}, {src.input_size}, {src.input_size}) with a dynamic batch, output `{OUTPUT_NAME}` "
        f"(batch, {len(src.classes)}) |",
        "| `model.safetensors` | the same weights for PyTorch, with cnnviz's metadata "
        "(`python -m cnnviz export RUN --checkpoint` writes the same file) |",
        "| `labels.json` | the class names in output order |",
        "| `preprocess.json` | what the model expects and how an image becomes its input |",
        "| `predict.py` | a standalone predictor: onnxruntime, numpy and pillow, no torch |",
        "",
        "## Input", "",
        f"- {chans}, {src.input_size}x{src.input_size} pixels, float32, NCHW.",
        f"- Resize: {spec['resize']['how']}.",
        f"- Values: pixel / 255, then (x - mean) / std per channel with mean = "
        f"{tuple(round(m, 4) for m in spec['mean'])} and std = {tuple(round(s, 4) for s in spec['std'])}.",
        f"- Decoding: {spec['decode']} (white).",
    ]
    if src.in_channels == 1:
        lines.append(f"- Grayscale: {spec['grayscale']}.")
    lines += [
        "",
        "## Run it", "",
        "```bash",
        "pip install onnxruntime numpy pillow",
        "python predict.py photo.jpg other.png --top 3",
        "python predict.py *.jpg --json      # one JSON document for a machine",
        "```",
        "",
        "Each image gets its top classes with probabilities; a file that is not an image gets one line on "
        "stderr and the others go on (exit code 2 then, 0 otherwise). `predict.py` prepares images exactly "
        "as cnnviz's Feature maps page does, so it gives the same classes and probabilities.",
        "",
        "## Check", "",
        f"Before writing this folder, cnnviz ran `model.onnx` with onnxruntime and the PyTorch model on the same "
        f"{result.n_checked} images ({result.checked_on}): the largest logit difference was "
        f"**{result.max_diff:.3g}** (the export refuses above {_sci(MAX_LOGIT_DIFF)}); the top-1 class agreed on "
        f"{result.top1_agree} of {result.n_checked}.",
        "",
        "## Made with", "",
        "Exported with `torch.onnx.export(..., dynamo=True)` (the torch.export-based exporter), ONNX opset "
        f"{result.opset}.", "",
        "| package | version |", "| --- | --- |",
        *[f"| {k} | {val} |" for k, val in v.items()],
    ]
    if src.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in src.notes]]
    return "\n".join(lines) + "\n"


def _dangerous(out: Path, protect: list[Path]) -> str | None:
    """Why replacing `out` with --force would destroy something it must not, or None."""
    o = out.resolve()
    for p, what in ((Path.cwd(), "the current folder"), (Path.home(), "your home folder"), (Path("/"), "/")):
        with contextlib.suppress(OSError):
            rp = p.resolve()
            if o == rp or o in rp.parents:
                return f"it is {what}" if o == rp else f"it holds {what}"
    for p in protect:
        rp = Path(p).resolve()
        if o == rp or o in rp.parents:
            return f"it holds {p}, which this export reads"
    return None


def _not_a_bundle(out: Path) -> str | None:
    """Why `out` is not a previous bundle (which --force may replace), or None: a bundle holds the
    marker file it wrote and nothing but the bundle's own files (a bundle from before the marker:
    only the bundle's files, model.onnx and predict.py among them)."""
    names = sorted(p.name for p in out.iterdir())
    foreign = [n for n in names if n not in FILES]
    if foreign:
        more = f" (+{len(foreign) - 3} more)" if len(foreign) > 3 else ""
        return f"it holds files a bundle does not ({', '.join(map(repr, foreign[:3]))}{more})"
    marker = out / MARKER
    if marker.is_symlink() or (marker.exists() and not marker.is_file()):
        return f"its {MARKER} is not a plain file"
    if marker.is_file():
        with contextlib.suppress(OSError):
            if marker.stat().st_size <= 4096 and "cnnviz-bundle" in marker.read_text(errors="replace"):
                return None
        return f"its {MARKER} is not one cnnviz wrote"
    if {"model.onnx", "predict.py"} <= set(names):
        return None
    return f"it has no {MARKER} file"


def _check_target(out: Path, force: bool, protect: list[Path]) -> None:
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out} exists and is not a folder; choose another output folder.")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise BundleError(f"{out} exists and is not empty: pass --force to replace it, or choose another folder.")
        why = _dangerous(out, protect)
        foreign = None if why else _not_a_bundle(out)
        why = why or (f"{foreign}: --force replaces only an earlier bundle" if foreign else None)
        if why:
            raise BundleError(f"Refusing to replace {out}: {why}.")


def _write_files(src: BundleSource, folder: Path) -> BundleResult:
    """All bundle files into the (empty, temporary) `folder`; raises BundleError on a failed check."""
    from ..models.checkpoints import save_checkpoint

    x, checked_on = check_batch(src)
    onnx_path = folder / "model.onnx"
    export_onnx(src.model, onnx_path, x[:2], src.name)
    diff, agree = check_onnx(onnx_path, src.model, x)
    result = BundleResult(folder, diff, int(x.shape[0]), checked_on, agree, notes=list(src.notes))
    save_checkpoint(src.state_dict, folder / "model.safetensors", src.meta)
    (folder / "labels.json").write_text(json.dumps(list(src.classes), indent=1, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    spec = preprocess_spec(src)
    (folder / "preprocess.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    shutil.copyfile(PREDICT_SCRIPT, folder / "predict.py")
    (folder / "README.md").write_text(_readme(src, result, spec), encoding="utf-8")
    (folder / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    for name in FILES:
        with open(folder / name, "rb+") as f:
            os.fsync(f.fileno())
    return result


def write_bundle(src: BundleSource, out_dir: Path, force: bool = False) -> BundleResult:
    """Write the bundle of `src` to `out_dir` (refused when it exists and is not empty, unless `force`)."""
    out = Path(out_dir)
    _check_target(out, force, src.protect)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        result = _write_files(src, tmp)
        _check_target(out, force, src.protect)  # again: something may have appeared meanwhile
        if out.is_dir():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, trash / "old")
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(trash / "old", out)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, out)
        _permissions(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.path = out
    return result


def _permissions(folder: Path) -> None:
    """mkdtemp/mkstemp make 0700/0600: give the bundle the modes a plain mkdir/open would have."""
    umask = 0o022
    with contextlib.suppress(OSError, ValueError):  # read it without os.umask(), which would set it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o777 & ~umask)
        for name in FILES:
            os.chmod(folder / name, 0o666 & ~umask)


def bundle_run(run_dir: Path, out_dir: Path, epoch: int | None = None, force: bool = False) -> BundleResult:
    """The bundle of a training run's weights (`epoch`, default the newest) in `out_dir`."""
    return write_bundle(source_from_run(run_dir, epoch), out_dir, force)


def bundle_checkpoint(path: Path, out_dir: Path, force: bool = False) -> BundleResult:
    """The bundle of a checkpoint file (e.g. assets/checkpoints/lenet5-cifar10.safetensors)."""
    return write_bundle(source_from_checkpoint(path), out_dir, force)


def bundle_zip(src: BundleSource, folder_name: str = "bundle") -> tuple[bytes, BundleResult]:
    """The bundle as zip bytes (files under `folder_name`/), for a download button."""
    with tempfile.TemporaryDirectory(prefix="cnnviz-bundle-") as tmp:
        result = write_bundle(src, Path(tmp) / folder_name)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in FILES:
                zf.write(result.path / name, f"{folder_name}/{name}")
        return buf.getvalue(), result
