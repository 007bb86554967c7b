"""The examples in the docs run: every fenced code block of ``README.md`` and ``docs/*.md``, and every
``>>>`` example in the docstrings of ``fnlab/``.

* ``python`` blocks are executed (in a fresh namespace, in a temporary working folder); ``>>>`` blocks
  (``pycon``, or any block starting with ``>>>``) run as doctests.
* ``bash`` blocks: each ``fnlab ...`` command is parsed by the real ``fnlab`` parser (flags, choices, types),
  and ``fnlab train`` commands are also checked against the registries (sampler, loss and their
  parameters, dataset options) the way ``fnlab train`` checks them before any work; nothing is trained.
  Each ``python bench/NAME.py`` script named must exist.
* An HTML comment right before a block (invisible on the rendered page) says how to run it:

  - ``<!-- example: setup NOTE`` + lines of Python + ``-->``: run first, in the same namespace (stand-ins
    for a user's embeddings, so the visible example stays as a user would write it);
  - ``<!-- example: skip REASON -->``: not run, with the reason (a block that needs a user's files);
  - ``<!-- example: tested by tests/FILE.py::TEST -->``: run by that test (which must exist).

  A ``<!-- example: check`` + lines of Python + ``-->`` comment right after a block holds assertions run
  after it. (The first line of a setup or check comment is a note; its code starts on the next line.)

Docstring examples: every module of ``fnlab/`` whose source holds ``>>>`` runs through :mod:`doctest`.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!--\s*example:\s*(setup|skip|tested by|check)\b(.*?)-->\s*$", re.S)
PYTHON, DOCTEST, SHELL = ("python", "py"), ("pycon", "doctest"), ("bash", "sh", "shell", "console")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    mark: str | None = None  # setup | skip | tested by
    mark_text: str = ""
    check: str = ""

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def _marker(text: str) -> tuple[str | None, str]:
    """The ``<!-- example: ... -->`` comment that ``text`` ends with, as ``(kind, rest)``."""
    text = text.rstrip()
    if not text.endswith("-->"):
        return None, ""
    match = MARK.search(text[text.rfind("<!--"):])
    if not match:
        return None, ""
    kind, rest = match.group(1), match.group(2)
    if kind in ("setup", "check"):  # a note on the first line, then the code
        return kind, rest.partition("\n")[2]
    return kind, rest.strip()


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their markers."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        mark, mark_text = _marker(text[:m.start()])
        after = text[m.end():].lstrip()
        check = ""
        if after.startswith("<!--"):
            kind, rest = _marker(after[:after.find("-->") + 3])
            check = rest if kind == "check" else ""
        out.append(Block(path, text.count("\n", 0, m.start()) + 1, m.group(1).lower(), m.group(2), mark,
                         mark_text, check))
    return out


ALL = [b for path in DOCS for b in blocks(path)]
CODE = [b for b in ALL if b.lang in PYTHON + DOCTEST or b.code.lstrip().startswith(">>>")]
SHELL_BLOCKS = [b for b in ALL if b.lang in SHELL]


def _run_doctest(source: str, name: str, globs: dict) -> None:
    test = doctest.DocTestParser().get_doctest(source, globs, name, name, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def _test_exists(ref: str) -> bool:
    file, _, name = ref.partition("::")
    path = REPO / file
    if not path.is_file() or not name:
        return False
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


def test_the_docs_hold_examples_and_every_marker_is_known():
    assert CODE and SHELL_BLOCKS  # the extraction finds what the docs hold
    for path in DOCS:
        for m in re.finditer(r"<!--\s*example:(.*?)-->", path.read_text(encoding="utf-8"), re.S):
            assert MARK.search(m.group(0)), f"{path.name}: unknown example marker {m.group(0)[:80]!r}"


@pytest.mark.parametrize("block", CODE, ids=[b.where for b in CODE])
def test_code_example_runs(block: Block, tmp_path, monkeypatch):
    if block.mark == "skip":
        assert block.mark_text, f"{block.where}: a skip marker must say why"
        pytest.skip(f"{block.where}: {block.mark_text}")
    if block.mark == "tested by":
        assert _test_exists(block.mark_text), f"{block.where}: no test {block.mark_text!r}"
        return
    monkeypatch.chdir(tmp_path)  # anything an example writes lands in a temporary folder
    ns: dict = {"__name__": "__doc_example__"}
    if block.mark == "setup":
        exec(compile(block.mark_text, f"{block.where} (setup)", "exec"), ns)  # noqa: S102 - our own docs
    if block.lang in DOCTEST or block.code.lstrip().startswith(">>>"):
        _run_doctest(block.code, block.where, ns)
    else:
        exec(compile(block.code, block.where, "exec"), ns)  # noqa: S102 - our own docs
    if block.check:
        exec(compile(block.check, f"{block.where} (check)", "exec"), ns)  # noqa: S102 - our own docs


def _commands(code: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped, ``[optional]`` flags kept."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line.replace("[", " ").replace("]", " "), comments=True)
        if words:
            out.append(words)
    return out


SHELL_COMMANDS = [(b, words) for b in SHELL_BLOCKS for words in _commands(b.code)
                  if words[0] == "fnlab" or (words[0] == "python" and words[1].startswith("bench/"))]


@pytest.mark.parametrize("block,words", SHELL_COMMANDS, ids=[f"{b.where}:{' '.join(w[:3])}" for b, w in SHELL_COMMANDS])
def test_shell_example_is_a_valid_command(block: Block, words: list[str], capsys):
    if words[0] == "python":
        assert (REPO / words[1]).is_file(), f"{block.where}: {words[1]} does not exist"
        return
    from fnlab.cli import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(words[1:])
    except SystemExit:
        pytest.fail(f"{block.where}: {' '.join(words)}: {capsys.readouterr().err.strip()}")
    if args.command == "train":
        from fnlab.cli.train import config_from_args

        config_from_args(args)  # sampler, loss, their parameters and the dataset options, checked by name


def _doctest_modules() -> list[str]:
    out = []
    for path in sorted((REPO / "fnlab").rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


DOCTEST_MODULES = _doctest_modules()


@pytest.mark.parametrize("module", DOCTEST_MODULES)
def test_docstring_examples_run(module: str, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(module)
    tests = [t for t in doctest.DocTestFinder().find(mod, module) if t.examples]
    assert tests, f"{module}: '>>>' in its source but no doctest found"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_the_checks_fire_on_broken_examples(tmp_path):
    """A wrong output, a failing Python block and an unknown flag are caught (planted in a temporary doc)."""
    with pytest.raises(AssertionError, match="Expected"):
        _run_doctest(">>> 1 + 1\n3\n", "planted", {})
    doc = tmp_path / "planted.md"
    doc.write_text("<!-- example: setup (a note)\nx = 2\n-->\n```python\ny = x + 1\n```\n<!-- example: check\n"
                   "assert y == 4\n-->\n\n<!-- example: skip needs your files -->\n```python\nopen('mine')\n```\n"
                   "```bash\nfnlab train --dataset shapes --no-such-flag 1 --out x\n```\n")
    found = blocks(doc)
    assert [(b.lang, b.mark) for b in found] == [("python", "setup"), ("python", "skip"), ("bash", None)]
    ns: dict = {}
    exec(found[0].mark_text, ns)  # noqa: S102
    exec(found[0].code, ns)  # noqa: S102
    with pytest.raises(AssertionError):
        exec(found[0].check, ns)  # noqa: S102
    assert found[1].mark_text == "needs your files"
    from fnlab.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(_commands(found[2].code)[0][1:])
