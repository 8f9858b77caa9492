"""The README's Python API example runs as written (it is the project's own text, not user input)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_example_runs(monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(ROOT)
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102
    assert scope["s"].total_params == 40_010
    assert tuple(scope["maps"]["conv_unit.0"].shape) == (1, 16, 28, 28)
    assert tuple(scope["cam"].cam.shape) == (32, 32)
    assert len(scope["ds"]) > 0 and str(scope["ds"].images.dtype) == "torch.uint8"
