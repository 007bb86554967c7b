"""The layers of docs/ARCHITECTURE.md hold: every fnlab module sits in a layer folder, imports (at module
level or inside functions) only from its own layer or lower ones, the folders import each other without a
cycle, and the engine never imports the app or streamlit. Read from the source with ``ast``; nothing is
imported."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAYERS = {  # folder of fnlab/ -> layer, lowest first (docs/ARCHITECTURE.md)
    "core": 0,
    "data": 1, "models": 1, "retrieval": 1,
    "samplers": 2, "losses": 2, "posterior": 2,
    "training": 3, "analysis": 3,
    "storage": 4,
    "cli": 5,
}
APP_LAYER = 5


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """``(imported name, line)`` of every import in ``path``, relative ones resolved to absolute names."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            yield from ((f"{base}.{alias.name}", node.lineno) for alias in node.names)


def _folder(name: str) -> str | None:
    """The layer folder of an imported ``fnlab.<folder>...`` name; ``None`` for anything else (the
    package root's lazy public API, ``__version__``, other packages)."""
    parts = name.split(".")
    if parts[0] != "fnlab" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _engine_files() -> list[Path]:
    return sorted(p for p in (REPO / "fnlab").rglob("*.py") if p != REPO / "fnlab" / "__init__.py")


def test_every_engine_module_sits_in_a_layer_folder():
    stray = [str(p.relative_to(REPO)) for p in _engine_files() if p.relative_to(REPO / "fnlab").parts[0] not in LAYERS]
    assert not stray, f"modules outside the layer folders of docs/ARCHITECTURE.md: {stray}"


def test_imports_never_run_upward():
    upward = []
    for path in _engine_files() + sorted((REPO / "app").rglob("*.py")):
        here = _folder(_module(path))
        layer = APP_LAYER if here is None else LAYERS[here]
        for name, line in _imports(path):
            if here is not None and name.split(".")[0] in ("app", "streamlit"):
                upward.append(f"{path.relative_to(REPO)}:{line} imports {name} (the engine never imports the app)")
            there = _folder(name)
            if there is not None and LAYERS[there] > layer:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {name} ({there}/ is a higher layer)")
    assert not upward, "\n".join(upward)


def test_layer_folders_import_each_other_without_a_cycle():
    graph: dict[str, set[str]] = {f: set() for f in LAYERS}
    for path in _engine_files():
        here = _folder(_module(path))
        for name, _ in _imports(path):
            there = _folder(name)
            if there is not None and there != here:
                graph[here].add(there)
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, f"import cycle between folders: {' -> '.join(trail + [node, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for folder in LAYERS:
        if folder not in state:
            visit(folder, [])
