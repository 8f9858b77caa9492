"""2-D convolution on an image, the output-size formula, weight sharing and receptive fields.

`convolve` applies one k×k kernel either to every RGB channel separately (a depthwise conv,
groups=3) or to the grayscale image, with stride, padding (zeros, reflect, replicate,
circular), dilation and bias, exactly as `torch.nn.Conv2d` would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import OpError

PADDING_MODES: tuple[str, ...] = ("zeros", "reflect", "replicate", "circular")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as PIL's convert("L")


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """floor((size + 2p - d(k-1) - 1) / s) + 1, the formula in the nn.Conv2d docs (may be <= 0)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def formula_text(size: int, kernel: int, stride: int, padding: int, dilation: int, axis: str = "H") -> str:
    """The output-size formula with the numbers filled in, e.g. 'H_out = floor((96 + 2·1 − 1·(3−1) − 1)/1) + 1 = 96'."""
    num = size + 2 * padding - dilation * (kernel - 1) - 1
    out = output_size(size, kernel, stride, padding, dilation)
    return (f"{axis}_out = floor(({size} + 2·{padding} − {dilation}·({kernel}−1) − 1) / {stride}) + 1"
            f" = floor({num} / {stride}) + 1 = {out}")


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB in [0, 1] -> (1, H, W) luma; 1-channel input passes through."""
    if x.shape[0] == 1:
        return x
    w = torch.tensor(GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * w).sum(0, keepdim=True)


def check(h: int, w: int, k: int, stride: int, padding: int, padding_mode: str, dilation: int) -> None:
    """Raise OpError with a one-line, user-facing reason if this conv can't run on an h×w image."""
    if padding_mode not in PADDING_MODES:
        raise OpError(f"padding mode must be one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
    if k < 1 or stride < 1 or dilation < 1 or padding < 0:
        raise OpError("kernel size, stride and dilation must be at least 1 and padding at least 0")
    if padding_mode == "reflect" and padding > 0 and padding >= min(h, w):
        raise OpError(f"reflect padding needs padding < the image side: padding {padding} but the image is "
                      f"{h}×{w}; use a smaller padding or another mode")
    if padding_mode == "circular" and padding > min(h, w):
        raise OpError(f"circular padding needs padding ≤ the image side: padding {padding} but the image is {h}×{w}")
    span = dilation * (k - 1) + 1
    if span > h + 2 * padding or span > w + 2 * padding:
        raise OpError(f"image smaller than the kernel: the {k}×{k} kernel with dilation {dilation} spans "
                      f"{span} px but the padded image is {h + 2 * padding}×{w + 2 * padding}; "
                      "add padding, lower the dilation or pick a smaller kernel")


@dataclass
class ConvResult:
    """What one convolution did."""

    input: torch.Tensor        # (C, H, W) the tensor the kernel ran on (RGB or gray)
    output: torch.Tensor       # (C, H_out, W_out), may be negative (channels_last strides on CPU)
    weight: torch.Tensor       # (C, 1, k, k) the conv weight as nn.Conv2d(groups=C) holds it
    bias: float
    stride: int
    padding: int
    padding_mode: str
    dilation: int
    groups: int

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[-1]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (1, *self.input.shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (1, *self.output.shape)


def _pad(x: torch.Tensor, padding: int, padding_mode: str) -> torch.Tensor:
    """(N, C, H, W) padded as nn.Conv2d pads for padding_mode (zeros included)."""
    if padding == 0:
        return x
    mode = "constant" if padding_mode == "zeros" else padding_mode
    return F.pad(x, (padding,) * 4, mode=mode)


def convolve(
    x: torch.Tensor,
    kernel: torch.Tensor,
    *,
    stride: int = 1,
    padding: int = 0,
    padding_mode: str = "zeros",
    dilation: int = 1,
    bias: float = 0.0,
    grayscale: bool = False,
) -> ConvResult:
    """Convolve a (C, H, W) image with one (k, k) kernel, per channel (depthwise) or on grayscale.

    Matches nn.Conv2d(C, C, k, stride, padding, dilation, groups=C, bias=True, padding_mode=...)
    with every filter set to `kernel` and every bias to `bias`. Raises OpError on impossible settings.
    """
    if x.ndim != 3:
        raise OpError(f"expected an image tensor (C, H, W), got shape {tuple(x.shape)}")
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise OpError(f"the kernel must be square, got shape {tuple(kernel.shape)}")
    src = to_gray(x) if grayscale else x
    c, h, w = src.shape
    k = kernel.shape[0]
    check(h, w, k, stride, padding, padding_mode, dilation)
    weight = kernel.to(device=src.device, dtype=src.dtype).expand(c, 1, k, k).contiguous()
    b = torch.full((c,), float(bias), dtype=src.dtype, device=src.device) if bias else None
    inp = src[None]
    if c > 1 and src.device.type == "cpu":
        # PyTorch's CPU depthwise conv is 10-20x faster on channels_last tensors (oneDNN path).
        inp = inp.contiguous(memory_format=torch.channels_last)
    if padding_mode == "zeros":
        out = F.conv2d(inp, weight, b, stride=stride, padding=padding, dilation=dilation, groups=c)
    else:
        out = F.conv2d(_pad(inp, padding, padding_mode), weight, b, stride=stride, dilation=dilation, groups=c)
    return ConvResult(src, out[0], weight, float(bias), stride, padding, padding_mode, dilation, c)


@dataclass
class ParamCount:
    """Weights of this conv layer vs a dense layer mapping the same input to the same output."""

    conv_weights: int
    conv_bias: int
    dense_weights: int
    dense_bias: int
    conv_formula: str
    dense_formula: str

    @property
    def conv_total(self) -> int:
        return self.conv_weights + self.conv_bias

    @property
    def dense_total(self) -> int:
        return self.dense_weights + self.dense_bias

    @property
    def ratio(self) -> float:
        """How many times more parameters the dense layer needs."""
        return self.dense_total / self.conv_total


def param_count(k: int, c_in: int, c_out: int, in_hw: tuple[int, int], out_hw: tuple[int, int],
                groups: int = 1, bias: bool = True) -> ParamCount:
    """k·k·(C_in/groups)·C_out (+ C_out bias) vs (C_in·H·W)·(C_out·H_out·W_out) (+ C_out·H_out·W_out)."""
    cin_g = c_in // groups
    n_in = c_in * in_hw[0] * in_hw[1]
    n_out = c_out * out_hw[0] * out_hw[1]
    conv_f = f"{k}·{k}·{cin_g}·{c_out}" + (f" + {c_out}" if bias else "")
    dense_f = f"({c_in}·{in_hw[0]}·{in_hw[1]})·({c_out}·{out_hw[0]}·{out_hw[1]})" + (f" + {n_out}" if bias else "")
    return ParamCount(k * k * cin_g * c_out, c_out if bias else 0, n_in * n_out, n_out if bias else 0, conv_f, dense_f)


@dataclass
class ReceptiveField:
    """One output value recomputed by hand from the input patch it reads."""

    out_yx: tuple[int, int]
    channel: int
    rows: list[int]            # input row of each kernel row (may be outside 0..H-1: padding)
    cols: list[int]
    patch: torch.Tensor        # (k, k) the values the kernel multiplies (padded values included)
    kernel: torch.Tensor       # (k, k)
    products: torch.Tensor     # patch * kernel
    bias: float
    total: float               # products.sum() + bias
    output: float              # what the conv produced at out_yx
    in_hw: tuple[int, int]     # size of the (unpadded) input

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) inclusive, in input pixel coordinates (may go outside the image)."""
        return self.rows[0], self.cols[0], self.rows[-1], self.cols[-1]

    @property
    def touches_padding(self) -> bool:
        h, w = self.in_hw
        return self.rows[0] < 0 or self.cols[0] < 0 or self.rows[-1] >= h or self.cols[-1] >= w


def receptive_field(res: ConvResult, out_y: int, out_x: int, channel: int = 0) -> ReceptiveField:
    """The input patch behind output pixel (out_y, out_x) of `res`, the products and their sum."""
    _, ho, wo = res.output.shape
    if not (0 <= out_y < ho and 0 <= out_x < wo):
        raise OpError(f"output pixel ({out_y}, {out_x}) is outside the {ho}×{wo} output")
    channel = min(channel, res.output.shape[0] - 1)
    k, s, p, d = res.kernel_size, res.stride, res.padding, res.dilation
    y0, x0 = out_y * s, out_x * s  # top-left in padded coordinates
    prow = [y0 + i * d for i in range(k)]
    pcol = [x0 + j * d for j in range(k)]
    img = res.input[channel][None, None]
    padded = _pad(img, p, res.padding_mode)[0, 0]  # one channel: cheap even on big images
    patch = padded[prow][:, pcol]
    kern = res.weight[channel, 0]
    prod = patch * kern
    total = float(prod.double().sum()) + res.bias
    rf = ReceptiveField((out_y, out_x), channel, [r - p for r in prow], [c - p for c in pcol],
                        patch, kern, prod, res.bias, total, float(res.output[channel, out_y, out_x]),
                        (res.input.shape[1], res.input.shape[2]))
    return rf


def padded_crop(res: ConvResult, rf: ReceptiveField, margin: int = 2) -> tuple[torch.Tensor, int, int]:
    """The padded input around a receptive field: (C, h, w) crop and its (top, left) in input
    coordinates (negative where the crop starts in the padding)."""
    p = res.padding
    _, h, w = res.input.shape
    top = max(-p, rf.rows[0] - margin)
    left = max(-p, rf.cols[0] - margin)
    bottom = min(h - 1 + p, rf.rows[-1] + margin)
    right = min(w - 1 + p, rf.cols[-1] + margin)
    # Pad only the window we need: slice with the padding's reach, then pad that.
    y0, y1 = max(0, top - p), min(h, bottom + 1 + p)
    x0, x1 = max(0, left - p), min(w, right + 1 + p)
    region = res.input[:, y0:y1, x0:x1]
    if p:
        # Padding values depend on the whole image for circular/reflect, so pad the full image
        # only when the window reaches the border; else the region itself suffices.
        if top < 0 or left < 0 or bottom >= h or right >= w:
            full = _pad(res.input[None], p, res.padding_mode)[0]
            return full[:, top + p:bottom + p + 1, left + p:right + p + 1], top, left
    return region[:, top - y0:bottom - y0 + 1, left - x0:right - x0 + 1], top, left
