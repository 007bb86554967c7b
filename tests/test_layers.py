"""The layers of docs/ARCHITECTURE.md hold: every fnlab module sits in a layer folder, imports (at module
level or inside functions) only from its own layer or lower ones, the folders import each other without a
cycle, the modules' import-time imports form no cycle (inside a layer too), the engine never imports
the app or streamlit, and the scan engines (``fnlab/analysis/scan/``) import only its shared parts. Read
from the source with ``ast``; nothing is imported. Each check is also run on a temporary copy of the source
with a planted fault, to show that it fires."""

from __future__ import annotations

import ast
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def _module(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_nodes(tree: ast.Module, module_level: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement; with ``module_level``, only those that run when the module is imported: not
    inside a function or class body, not under ``if TYPE_CHECKING:``."""
    if not module_level:
        yield from (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))
        return

    def walk(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for node in body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node
            elif isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                    yield from walk(block)
            elif isinstance(node, ast.With):
                yield from walk(node.body)

    yield from walk(tree.body)


@functools.cache
def _parse(source: str) -> ast.Module:
    """One parse per distinct source text (the checks, and the planted copies, read the same files)."""
    return ast.parse(source)


def _imports(path: Path, root: Path = REPO, *, module_level: bool = False) -> Iterator[tuple[str, int]]:
    """``(imported name, line)`` of every import in ``path``, relative ones resolved to absolute names
    (``from a.b import c`` gives ``a.b.c``)."""
    mod = _module(path, root)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in _import_nodes(_parse(path.read_text()), module_level):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        else:
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


def _engine_files(root: Path = REPO) -> list[Path]:
    return sorted(p for p in (root / "fnlab").rglob("*.py") if p != root / "fnlab" / "__init__.py")


def _upward_imports(root: Path = REPO) -> list[str]:
    upward = []
    for path in _engine_files(root) + sorted((root / "app").rglob("*.py")):
        here = _folder(_module(path, root))
        layer = APP_LAYER if here is None else LAYERS[here]
        for name, line in _imports(path, root):
            if here is not None and name.split(".")[0] in ("app", "streamlit"):
                upward.append(f"{path.relative_to(root)}:{line} imports {name} (the engine never imports the app)")
            there = _folder(name)
            if there is not None and LAYERS[there] > layer:
                upward.append(f"{path.relative_to(root)}:{line} imports {name} ({there}/ is a higher layer)")
    return upward


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return trail[trail.index(nxt):] + [node, nxt] if nxt in trail else trail + [node, nxt]
            if nxt not in state and (found := visit(nxt, trail + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def _folder_cycle(root: Path = REPO) -> list[str] | None:
    graph: dict[str, set[str]] = {f: set() for f in LAYERS}
    for path in _engine_files(root):
        here = _folder(_module(path, root))
        for name, _ in _imports(path, root):
            there = _folder(name)
            if there is not None and there != here:
                graph[here].add(there)
    return _find_cycle(graph)


def _module_cycle(root: Path = REPO) -> list[str] | None:
    """A cycle among the engine's modules through the imports that run at import time (``from a import b``
    names module ``a.b`` where that is a module, else ``a``). A package's ``__init__`` importing its own
    modules is not a cycle by itself: only explicit imports count, never the implicit import of a parent
    package."""
    files = {_module(p, root): p for p in _engine_files(root)}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for name, _ in _imports(path, root, module_level=True):
            target = name if name in files else name.rpartition(".")[0]
            if target in files and target != mod:
                graph[mod].add(target)
    return _find_cycle(graph)


SCAN = "fnlab.analysis.scan"
SCAN_ENGINES = ("local", "ray")  # fnlab/analysis/scan/: the engines; its other modules are the shared parts


def _scan_package_imports(root: Path = REPO) -> list[str]:
    """Imports (anywhere, inside functions too) by which a module of ``fnlab/analysis/scan/`` reaches the
    package's ``__init__`` or an engine other than itself: the engines import only the shared parts
    (``inputs``, ``fit``, ``table``), and the shared parts import no engine (docs/ARCHITECTURE.md)."""
    folder = root / "fnlab" / "analysis" / "scan"
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__"}
    bad = []
    for path in sorted(folder.glob("*.py")):
        if path.stem == "__init__":
            continue
        for name, line in _imports(path, root):
            if name != SCAN and not name.startswith(SCAN + "."):
                continue
            head = name[len(SCAN) + 1:].split(".")[0]
            where = f"{path.relative_to(root)}:{line} imports {name}"
            if head not in modules:
                bad.append(f"{where} (the package __init__: import the module that owns the name)")
            elif head in SCAN_ENGINES and head != path.stem:
                bad.append(f"{where} (the engine {head!r}: engines share only inputs, fit and table)")
    return bad


@pytest.fixture
def planted(tmp_path):
    """A copy of ``fnlab/`` and ``app/`` to plant faults in."""
    for folder in ("fnlab", "app"):  # the Python files only
        shutil.copytree(REPO / folder, tmp_path / folder,
                        ignore=lambda d, names: [n for n in names if not n.endswith(".py") and not Path(d, n).is_dir()
                                                 or n == "__pycache__"])
    return tmp_path


def test_every_engine_module_sits_in_a_layer_folder():
    stray = [str(p.relative_to(REPO)) for p in _engine_files() if p.relative_to(REPO / "fnlab").parts[0] not in LAYERS]
    assert not stray, f"modules outside the layer folders of docs/ARCHITECTURE.md: {stray}"


def test_imports_never_run_upward():
    upward = _upward_imports()
    assert not upward, "\n".join(upward)


def test_layer_folders_import_each_other_without_a_cycle():
    cycle = _folder_cycle()
    assert cycle is None, f"import cycle between folders: {' -> '.join(cycle)}"


def test_modules_import_each_other_without_a_cycle_at_import_time():
    """Inside a layer too: two modules of ``analysis/`` importing each other at module level is a cycle."""
    cycle = _module_cycle()
    assert cycle is None, f"import cycle between modules (imports at module level): {' -> '.join(cycle)}"


def test_the_scan_engines_import_only_the_shared_parts():
    bad = _scan_package_imports()
    assert not bad, "\n".join(bad)


def test_the_scan_package_check_fires_on_a_planted_fault(planted):
    scan = planted / "fnlab" / "analysis" / "scan"
    assert not _scan_package_imports(planted)
    local = (scan / "local.py").read_text()
    (scan / "local.py").write_text(local + "\n\ndef planted():\n    from fnlab.analysis.scan.ray import ray_scan\n")
    (scan / "fit.py").write_text((scan / "fit.py").read_text() + "\nfrom fnlab.analysis.scan import ScanResult\n")
    bad = _scan_package_imports(planted)
    assert len(bad) == 2, bad
    assert "local.py" in bad[1] and "imports fnlab.analysis.scan.ray.ray_scan (the engine 'ray'" in bad[1], bad
    assert "fit.py" in bad[0] and "(the package __init__" in bad[0], bad


def test_each_check_fires_on_a_planted_fault(planted):
    analysis = planted / "fnlab" / "analysis"
    assert _module_cycle(planted) is None and _folder_cycle(planted) is None and not _upward_imports(planted)
    # two modules of one layer importing each other at module level (relative and absolute spellings)
    (analysis / "planted_a.py").write_text("from fnlab.analysis import planted_b\n")
    (analysis / "planted_b.py").write_text("from .planted_a import something\n")
    cycle = _module_cycle(planted)
    assert cycle is not None and set(cycle) == {"fnlab.analysis.planted_a", "fnlab.analysis.planted_b"}, cycle
    assert _folder_cycle(planted) is None  # one folder: the folder check cannot see it
    # inside a function or under TYPE_CHECKING an import runs later (or never): not an import-time cycle
    (analysis / "planted_b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                           "    from .planted_a import x\n\ndef f():\n"
                                           "    from fnlab.analysis.planted_a import y\n")
    assert _module_cycle(planted) is None
    # a three-module cycle through a package's __init__
    (analysis / "planted_b.py").write_text("import fnlab.analysis\n")
    (analysis / "__init__.py").write_text((analysis / "__init__.py").read_text() + "from . import planted_a\n")
    cycle = _module_cycle(planted)
    assert cycle is not None and "fnlab.analysis" in cycle and "fnlab.analysis.planted_a" in cycle, cycle
    # an upward import (data/ is below training/), and the folder cycle it makes
    (planted / "fnlab" / "data" / "planted_up.py").write_text("def f():\n    from fnlab.training import train\n")
    assert [u for u in _upward_imports(planted) if "planted_up.py:2 imports fnlab.training.train" in u]
    assert _folder_cycle(planted) is not None
