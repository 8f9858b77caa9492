"""Checkpoints: safetensors weights with cnnviz metadata, written atomically, loaded safely.

Format: a .safetensors file whose tensors are the model's state dict and whose metadata
holds {"format": "cnnviz-1", "meta": "<json>"}; meta names the model, classes, input
size, normalisation and the epoch. Loading never unpickles arbitrary objects: safetensors,
or `torch.load(..., weights_only=True)` for .pt/.pth files.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from .. import limits
from ..atomic import atomic_write_bytes

FORMAT = "cnnviz-1"
MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint could not be used; the message is meant for the user."""


@dataclass
class Checkpoint:
    """A loaded state dict and whatever metadata came with it."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(model_or_state: nn.Module | dict[str, torch.Tensor], path: str | Path,
                    meta: dict[str, Any] | None = None) -> Path:
    """Save weights as safetensors with `meta` (JSON-serialisable), atomically."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    blob = st_save(tensors, metadata={"format": FORMAT, "meta": json.dumps(meta or {})})
    atomic_write_bytes(path, blob)
    return Path(path)


def _looks_like_safetensors(raw: bytes) -> bool:
    if len(raw) < 10:
        return False
    n = int.from_bytes(raw[:8], "little")
    return 0 < n <= len(raw) - 8 and raw[8:9] == b"{"


def _read_safetensors_meta(raw: bytes) -> dict[str, Any]:
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    md = (header.get("__metadata__", {}) if isinstance(header, dict) else {}) or {}
    try:
        meta = json.loads(md.get("meta", "{}")) if md.get("format") == FORMAT else {}
    except (json.JSONDecodeError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _state_from_torch_object(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model_state", "model", "weights"):
            if isinstance(obj.get(key), dict):
                meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
                return _state_from_torch_object(obj[key])[0], meta
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj), {}
    raise CheckpointError("The file holds no state dict (a mapping of parameter names to tensors).")


def load_checkpoint(source: bytes | str | Path) -> Checkpoint:
    """Load a .safetensors or .pt/.pth checkpoint without running any code from it."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise CheckpointError(f"No such checkpoint: {p}.")
        if p.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{p.name} is larger than {MAX_CHECKPOINT_BYTES // 2**20} MB.")
        raw = p.read_bytes()
    else:
        raw = bytes(source)
    if not raw:
        raise CheckpointError("The checkpoint file is empty.")
    if len(raw) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"The checkpoint is larger than {MAX_CHECKPOINT_BYTES // 2**20} MB.")
    limits.check_budget("reading this checkpoint (the file and its tensors)", 2 * len(raw))
    if _looks_like_safetensors(raw):
        try:
            ckpt = Checkpoint(st_load(raw), _read_safetensors_meta(raw))
        except Exception as exc:
            raise CheckpointError(f"Not a valid safetensors file ({str(exc)[:200]}).") from None
        if not ckpt.state_dict:
            raise CheckpointError("The safetensors file holds no tensors.")
        return _bounded(ckpt)
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                "Refused: the file is a pickle that wants to build arbitrary Python objects "
                f"({text[:200]}). Only plain tensors and state dicts are loaded; nothing in the file was run. "
                "Save `model.state_dict()` (or use safetensors) instead of the whole model."
            ) from None
        raise CheckpointError(f"Not a PyTorch or safetensors checkpoint ({text[:200]}).") from None
    state, meta = _state_from_torch_object(obj)
    return _bounded(Checkpoint(state, meta))


_SIZE_KEYS = {"num_classes": "num_classes", "in_channels": "in_channels", "input_size": "input_size"}


def meta_int(meta: dict[str, Any], key: str) -> int | None:
    """An integer size from checkpoint metadata (None when absent); CheckpointError if it is not one."""
    value = meta.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise CheckpointError(f"The checkpoint's metadata gives {key} as {json.dumps(value)[:40]}, not a whole number.")
    return int(value)


def _bounded(ckpt: Checkpoint) -> Checkpoint:
    """Refuse sizes in the metadata (classes, channels, input size) above what any model here uses, and
    zero-size tensors (whose shapes would size a model at no cost to the file), before anything is built."""
    meta = ckpt.meta
    sizes = {k: meta_int(meta, k) for k in _SIZE_KEYS}
    classes = meta.get("classes")
    if isinstance(classes, list) and len(classes) > limits.MAX_CLASSES:
        sizes["num_classes"] = len(classes)
    limits.check_bounds(sizes["num_classes"], sizes["in_channels"], sizes["input_size"], "the checkpoint's metadata")
    for key, value in ckpt.state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"The state dict entry {str(key)[:80]!r} is not a tensor.")
        if value.numel() == 0 and value.dim() > 0:
            raise CheckpointError(f"The checkpoint holds a zero-size tensor ({str(key)[:80]!r}, shape "
                                  f"{tuple(value.shape)}): refused, as its shape could size a model.")
    return ckpt


def build_bytes(build: Any) -> int:
    """Bytes of the parameters and buffers of the model `build()` returns, counted on a `meta`
    build (shapes only: nothing is allocated, however large)."""
    with torch.device("meta"):
        model = build()
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def explain_mismatch(model: nn.Module, state: dict[str, torch.Tensor], limit: int = 6) -> str | None:
    """A readable list of missing/unexpected keys and shape mismatches, or None if it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = sorted(k for k in state if k not in own)
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts) or None


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers


def _strip_wrappers(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a 'module.' / '_orig_mod.' prefix that every key carries when that makes the keys fit."""
    own = set(model.state_dict())
    for _ in range(2):
        if set(state) == own:
            break
        for prefix in _WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                break
        else:
            break
    return state


def nonfinite_keys(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or infinity (a diverged run's weights)."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def load_into(model: nn.Module, ckpt: Checkpoint, model_name: str = "the model") -> nn.Module:
    """Load `ckpt` into `model` strictly; CheckpointError naming mismatched keys/shapes otherwise.

    Weights saved from a design (meta "design_hash") load only into that same design.
    """
    saved = ckpt.meta.get("design_hash")
    own = getattr(model, "design_hash", None)
    if saved and saved != own:
        was = (ckpt.meta.get("design") or {}).get("name", "?") if isinstance(ckpt.meta.get("design"), dict) else "?"
        now = f"design {model.design.name!r}, {own}" if own else "not a design"
        raise CheckpointError(f"These weights were trained on design {was!r} ({saved}), not on {model_name} ({now}): "
                              "a design's weights load only into the same design.")
    state = _strip_wrappers(model, ckpt.state_dict)
    problem = explain_mismatch(model, state)
    if problem:
        hint = f" The file was saved from a {ckpt.meta['model']} model." if ckpt.meta.get("model") else ""
        raise CheckpointError(f"This checkpoint does not fit {model_name}: {problem}.{hint}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype torch cannot copy
        raise CheckpointError(f"This checkpoint does not fit {model_name}: {str(exc)[:300]}") from None
    return model
