#!/usr/bin/env python3
"""Classify images with the ONNX model in this folder: needs onnxruntime, numpy and pillow only.

    python predict.py IMAGE [IMAGE ...] [--top 5] [--json]

Prints the top classes with their probabilities for each image. The model, its class names
and its preprocessing sit next to this script: model.onnx, labels.json, preprocess.json.
Images are decoded and prepared exactly as cnnviz prepares an uploaded picture for its model
(preprocess.json says how): any image Pillow reads (PNG, JPEG, WebP, BMP, GIF, TIFF; CMYK,
palette, 16-bit and EXIF-rotated ones are converted), centre-cropped to a square, resized,
made grayscale if the model wants one channel, scaled to [0, 1] and normalised.

A file that cannot be used gets one line on stderr and the other images go on; the exit code
is then 2 (0 when every image was classified). `--json` prints one JSON document on stdout:
a list with, per image, {"image", "top": [{"rank", "index", "label", "probability"}]} or
{"image", "error"}.

Written by cnnviz (`python -m cnnviz export RUN_DIR --bundle OUT`); this file does not import
cnnviz or torch.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from struct import error as struct_error

HERE = Path(__file__).resolve().parent
MAX_BYTES = 25 * 1024 * 1024  # cnnviz's upload limit
MAX_PIXELS = 40_000_000       # refuse larger images before decoding them (cnnviz's limit)
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
BATCH = 32


class ImageError(ValueError):
    """An image could not be used; the message is one line for the user."""


# ----------------------------------------------------------------------------- decoding
# The same steps, in the same order, as cnnviz.images.decode.load_image(..., mode="RGB").

def _flatten_alpha(im, background):
    from PIL import Image

    rgba = im.convert("RGBA")
    base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
    return Image.alpha_composite(base, rgba).convert("RGB")


def _rescale_high_depth(im):
    """16/32-bit integer or float images onto 0..255 by their own range (no clipping)."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(im, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return Image.new("L", im.size, 0)
    lo, hi = float(finite.min()), float(finite.max())
    arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
    scaled = np.zeros_like(arr) if hi == lo else (arr - lo) / (hi - lo) * 255.0
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def _to_rgb(im, background):
    src = im.mode
    if src == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        src = im.mode
    if src in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = _flatten_alpha(im, background)
    elif src.startswith("I;16") or src in ("I", "F"):
        im = _rescale_high_depth(im)
    elif src == "1":
        im = im.convert("L")
    elif src not in ("RGB", "L"):
        im = im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...
    return im.convert("RGB") if im.mode != "RGB" else im


def load_image(path: Path, background=(255, 255, 255)):
    """Decode `path` into a fully loaded RGB image; ImageError (one line) when it can't be used."""
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    name = path.name
    if not path.is_file():
        raise ImageError(f"{name}: no such file")
    if path.stat().st_size > MAX_BYTES:
        raise ImageError(f"{name}: larger than {MAX_BYTES // 2**20} MB")
    raw = path.read_bytes()
    if not raw:
        raise ImageError(f"{name}: empty file")
    try:
        im = Image.open(io.BytesIO(raw), formats=FORMATS)
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageError(f"{name}: empty image ({w}x{h})")
        if w * h > MAX_PIXELS:
            raise ImageError(f"{name}: {w}x{h} is above the {MAX_PIXELS / 1e6:.0f} MP limit")
        fmt = im.format or ""
        if getattr(im, "is_animated", False) and fmt != "MPO":
            im.seek(0)  # animated or multi-page: the first frame
        im.load()
        if fmt == "PNG":  # every chunk's CRC through IEND: a damaged PNG is refused
            Image.open(io.BytesIO(raw), formats=("PNG",)).verify()
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # noqa: BLE001 - malformed EXIF: use the picture as stored
            pass
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (use PNG, JPEG, WebP, BMP, GIF or TIFF)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: far too many pixels to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct_error):
        raise ImageError(f"{name}: truncated or corrupt image") from None
    except MemoryError:
        raise ImageError(f"{name}: needs more memory to decode than is available") from None
    except Exception:  # noqa: BLE001 - Pillow plugins raise odd things on hostile input
        raise ImageError(f"{name}: could not be decoded (damaged file?)") from None
    try:
        return _to_rgb(im, background)
    except Exception:  # noqa: BLE001
        raise ImageError(f"{name}: colour mode {im.mode} can't be converted to RGB") from None


# ----------------------------------------------------------------------------- preprocessing

def _resample(name: str):
    from PIL import Image

    table = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
             "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}
    if name not in table:
        raise SystemExit(f"preprocess.json: unknown interpolation {name!r}")
    return table[name]


def prepare(im, spec: dict):
    """RGB PIL image -> float32 array (C, H, W), as preprocess.json describes."""
    import numpy as np
    from PIL import Image, ImageOps

    inp, resize = spec["input"], spec["resize"]
    size = (int(inp["width"]), int(inp["height"]))
    method = _resample(resize["interpolation"])
    if resize["mode"] == "center-crop-resize":
        im = ImageOps.fit(im.convert("RGB"), size, method=method, centering=tuple(resize.get("centering", (0.5, 0.5))))
    elif resize["mode"] == "resize":
        im = im.convert("RGB").resize(size, method)
    else:
        raise SystemExit(f"preprocess.json: unknown resize mode {resize['mode']!r}")
    channels = int(inp["channels"])
    if spec["color"] == "grayscale":
        im = im.convert("L")
    arr = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if arr.shape[0] != channels:
        raise SystemExit(f"preprocess.json: {spec['color']} gives {arr.shape[0]} channel(s), "
                         f"the model wants {channels}")
    mean = np.asarray(spec["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(spec["std"], dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((arr - mean) / std, dtype=np.float32)


def softmax(logits):
    import numpy as np

    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- main

def _fail(msg: str) -> int:
    print(f"predict.py: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="predict.py", description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path, help="image files")
    ap.add_argument("--top", type=int, default=5, help="how many classes to print per image (default 5)")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ap.add_argument("--model", type=Path, default=HERE / "model.onnx",
                    help="the ONNX model (default: the one next to this file)")
    args = ap.parse_args(argv)
    if args.top < 1:
        return _fail("--top must be 1 or more")
    try:
        import numpy as np
        import onnxruntime as ort
        import PIL  # noqa: F401
    except ImportError as exc:
        return _fail(f"{exc.name} is missing: pip install onnxruntime numpy pillow")
    folder = args.model.resolve().parent
    try:
        labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
        spec = json.loads((folder / "preprocess.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return _fail(f"can't read labels.json / preprocess.json next to the model ({exc})")
    if not args.model.is_file():
        return _fail(f"no model at {args.model}")
    try:
        sess = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        return _fail(f"onnxruntime can't load {args.model.name}: {str(exc).splitlines()[0][:200]}")
    input_name = sess.get_inputs()[0].name

    results: list[dict] = []
    ready: list[tuple[int, object]] = []
    for path in args.images:
        try:
            x = prepare(load_image(path, tuple(spec.get("background", (255, 255, 255)))), spec)
        except ImageError as exc:
            print(f"predict.py: {exc}", file=sys.stderr)
            results.append({"image": str(path), "error": str(exc)})
            continue
        results.append({"image": str(path)})
        ready.append((len(results) - 1, x))
    for start in range(0, len(ready), BATCH):
        chunk = ready[start:start + BATCH]
        logits = sess.run(None, {input_name: np.stack([x for _, x in chunk])})[0]
        probs = softmax(logits)
        k = min(args.top, probs.shape[1])
        for (i, _), p in zip(chunk, probs):
            order = np.argsort(-p, kind="stable")[:k]
            results[i]["top"] = [{"rank": r + 1, "index": int(c),
                                  "label": labels[c] if c < len(labels) else f"class {c}",
                                  "probability": float(p[c])} for r, c in enumerate(order)]
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for res in results:
            if "top" not in res:
                continue
            print(res["image"])
            width = max(len(t["label"]) for t in res["top"])
            for t in res["top"]:
                print(f"  {t['rank']:>2}. {t['label']:<{width}}  {100 * t['probability']:6.2f}%")
    return 2 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
