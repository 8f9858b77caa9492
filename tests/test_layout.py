"""The backend's shape: no module over 600 lines, no import cycle between its modules (module-level
imports: the ones that run on import), nothing under cnnviz/ imports streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "cnnviz"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _resolve(mod: str, is_pkg: bool, level: int, name: str | None) -> str:
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imports(mod: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of cnnviz that `mod` imports at module level (an import inside a function runs later)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in tree.body:
        stmts = [node]
        if isinstance(node, (ast.If, ast.Try)):
            stmts = [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
        for n in stmts:
            if isinstance(n, ast.Import):
                out |= {a.name for a in n.names if a.name in known}
            elif isinstance(n, ast.ImportFrom):
                target = _resolve(mod, is_pkg, n.level, n.module) if n.level else (n.module or "")
                for a in n.names:
                    sub = f"{target}.{a.name}"
                    out.add(sub if sub in known else target)
    return {m for m in out if m in known and m != mod}


def test_no_module_is_over_600_lines():
    big = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_no_import_cycle_between_modules():
    known = _modules()
    graph = {m: _imports(m, p, known) for m, p in known.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_the_backend_never_imports_streamlit():
    hits = [str(p.relative_to(ROOT)) for p in PKG.rglob("*.py")
            if any(isinstance(n, (ast.Import, ast.ImportFrom)) and any(
                (getattr(n, "module", None) or a.name).split(".")[0] == "streamlit" for a in n.names)
                   for n in ast.walk(ast.parse(p.read_text())))]
    assert not hits, hits
