"""Pick the compute device (CUDA, then MPS, then CPU) and describe it."""

from __future__ import annotations

import platform
from importlib import metadata

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """Return the device for `preference` ('auto', 'cuda', 'mps' or 'cpu').

    'auto' takes CUDA, then MPS, then CPU. Asking for a device that is not available
    raises ValueError with a message that says what is.
    """
    pref = (preference or "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref not in available_devices():
        raise ValueError(f"Device {pref!r} is not available here; available: {', '.join(available_devices())}.")
    return torch.device(pref)


def available_devices() -> list[str]:
    """Device names usable on this machine, best first."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    if torch.backends.mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def describe(device: torch.device | str | None = None) -> str:
    """One line for the UI: 'CUDA: NVIDIA H200 (139.8 GiB)', 'MPS (Apple GPU)' or 'CPU: 2 threads'."""
    dev = pick_device() if device is None else torch.device(device)
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return f"CUDA: {props.name} ({props.total_memory / 2**30:.1f} GiB)"
    if dev.type == "mps":
        return "MPS (Apple GPU)"
    return f"CPU: {torch.get_num_threads()} threads ({platform.processor() or platform.machine()})"


def supports_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is worth using on `device` (CUDA with native bf16)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def versions() -> dict[str, str]:
    """Library versions shown on the home page."""
    import PIL
    import plotly
    import torchvision

    import cnnviz

    try:  # read the version without importing streamlit: the backend stays UI-free
        st_version = metadata.version("streamlit")
    except metadata.PackageNotFoundError:  # pragma: no cover
        st_version = "not installed"
    return {
        "cnnviz": cnnviz.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "streamlit": st_version,
        "plotly": plotly.__version__,
        "pillow": PIL.__version__,
    }
