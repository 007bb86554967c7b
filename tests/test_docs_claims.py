"""What the docs name exists: a cheap, mechanical check of ``README.md`` and ``docs/*.md``.

* every dotted name ``fnlab.xxx.yyy`` resolves (the longest importable module, then attributes);
* every repository path they name (``fnlab/...``, ``tests/...``, ``bench/...``, ``app/...``, ``docs/...``,
  ``sample_data/...``) exists, and a ``tests/FILE.py::TEST`` names a test function of that file;
* every ``bench/results/...`` path, and every bare results file named after a bench script
  (``scan_scale_engines_30k.txt``), exists in ``bench/results/``;
* every ``fnlab COMMAND ... --flag`` written in inline code is accepted by that command's parser (the fenced
  ``bash`` blocks are parsed whole by ``tests/test_docs_examples.py``), and an inline span that is only a flag
  (``--queue-size 0``) names a flag of some ``fnlab`` command or of a bench script;
* every ``python bench/NAME.py ... --flag`` (inline or fenced) names a flag that script defines.

Names that the docs present as hypothetical (the worked example's sampler) are listed in ``HYPOTHETICAL`` with the
reason. Nothing is run: parsers are built, modules imported.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BENCH_STEMS = sorted(p.stem for p in (REPO / "bench").glob("*.py"))

# Named in the docs on purpose although they do not exist (the reason is the value).
HYPOTHETICAL = {
    "fnlab.samplers.nearest_mined": "ARCHITECTURE.md's worked example: the file a user would add",
    "fnlab/samplers/nearest_mined.py": "ARCHITECTURE.md's worked example: the file a user would add",
}
PLACEHOLDER = re.compile(r"[A-Z]{3,}|<|\*|\.\.\.")  # tests/FILE.py, runs/NAME, fnlab/<folder>/<module>.py


def _lines(path: Path, pattern: re.Pattern, text: str | None = None):
    text = path.read_text(encoding="utf-8") if text is None else text
    for m in pattern.finditer(text):
        yield text.count("\n", 0, m.start()) + 1, m


def _claims(pattern: re.Pattern, group: int = 1) -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        for line, m in _lines(path, pattern):
            out.append((f"{path.relative_to(REPO)}:{line}", m.group(group)))
    return out


def _inline_spans() -> list[tuple[str, str]]:
    """Inline code spans outside fenced blocks, with where they are."""
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        # blank the fenced blocks, keeping line numbers
        text = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
        for line, m in _lines(path, re.compile(r"`([^`\n]+)`"), text):
            out.append((f"{path.relative_to(REPO)}:{line}", m.group(1)))
    return out


# ----------------------------------------------------------------------------- dotted names
DOTTED = _claims(re.compile(r"(?<![\w/.])(fnlab(?:\.[A-Za-z_]\w*)+)"))


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as err:
            if err.name and not ".".join(parts[:i]).startswith(err.name):
                raise  # a module that exists failed to import: a real error, not a wrong name
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("where,name", sorted(set(DOTTED)), ids=[f"{w}:{n}" for w, n in sorted(set(DOTTED))])
def test_dotted_name_resolves(where: str, name: str):
    if name in HYPOTHETICAL:
        return
    assert _resolves(name), f"{where}: {name} does not resolve (no such module or attribute)"


# ----------------------------------------------------------------------------- paths
PATHS = [(w, p.rstrip(".,;:")) for w, p in
         _claims(re.compile(r"(?<![\w/.$-])((?:fnlab|tests|bench|app|docs|sample_data)/[\w./<>*-]*(?:::\w+)?)"))]


def _test_exists(file: Path, name: str) -> bool:
    tree = ast.parse(file.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(tree))


@pytest.mark.parametrize("where,path", sorted(set(PATHS)), ids=[f"{w}:{p}" for w, p in sorted(set(PATHS))])
def test_path_exists(where: str, path: str):
    file, _, test = path.partition("::")
    if file in HYPOTHETICAL or PLACEHOLDER.search(file):
        return
    assert (REPO / file).exists(), f"{where}: {file} does not exist"
    if test:
        assert _test_exists(REPO / file, test), f"{where}: {file} has no test {test}"


# ----------------------------------------------------------------------------- bench results
_STEMS = "|".join(map(re.escape, BENCH_STEMS))
BARE_RESULTS = re.compile(rf"`((?:{_STEMS})[\w.-]*\.(?:txt|md|csv|json))`")
RESULTS = sorted({(w, "bench/results/" + n) for w, n in _claims(BARE_RESULTS)}
                 | {(w, p) for w, p in PATHS if p.startswith("bench/results/")})


def test_the_readme_cites_results():
    assert any(w.startswith("README.md") for w, _ in RESULTS)


@pytest.mark.parametrize("where,path", RESULTS, ids=[f"{w}:{p}" for w, p in RESULTS])
def test_cited_result_exists(where: str, path: str):
    assert (REPO / path).exists(), f"{where}: {path} is cited but not in bench/results"


# ----------------------------------------------------------------------------- fnlab flags
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


@pytest.fixture(scope="module")
def fnlab_parser() -> argparse.ArgumentParser:
    from fnlab.cli import build_parser

    return build_parser()


def _command_parser(parser: argparse.ArgumentParser, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)parser that ``words`` (after ``fnlab``) reach, and the words left."""
    while words and words[0] in _subparsers(parser):
        parser, words = _subparsers(parser)[words[0]], words[1:]
    return parser, words


def _flags(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", w)]


def _words(span: str) -> list[str]:
    try:
        return shlex.split(span.replace("[", " ").replace("]", " ").replace("|", " "))
    except ValueError:
        return span.split()


SPANS = _inline_spans()
FNLAB_SPANS = [(w, s) for w, s in SPANS if s.startswith("fnlab ") and not s.startswith("fnlab.")]
FLAG_SPANS = [(w, s) for w, s in SPANS if re.match(r"--[a-z][\w-]*\b", s)]


def test_the_docs_name_commands_and_flags():
    assert len(FNLAB_SPANS) > 20 and len(FLAG_SPANS) > 10


@pytest.mark.parametrize("where,span", FNLAB_SPANS, ids=[f"{w}:{s[:40]}" for w, s in FNLAB_SPANS])
def test_inline_fnlab_command_flags_exist(where: str, span: str, fnlab_parser):
    parser, rest = _command_parser(fnlab_parser, _words(span)[1:])
    known = _options(parser)
    for flag in _flags(rest):
        assert flag in known, f"{where}: `{span}`: {parser.prog} has no {flag}"


def _bench_flags(stem: str) -> set[str]:
    return set(re.findall(r"[\"'](--?[A-Za-z][\w-]*)[\"']", (REPO / "bench" / f"{stem}.py").read_text(encoding="utf-8")))


@pytest.mark.parametrize("where,span", FLAG_SPANS, ids=[f"{w}:{s[:40]}" for w, s in FLAG_SPANS])
def test_a_lone_flag_belongs_to_some_command(where: str, span: str, fnlab_parser):
    flag = re.match(r"--[a-z][\w-]*", span).group(0)
    everything = set()
    stack = [fnlab_parser]
    while stack:
        p = stack.pop()
        everything |= _options(p)
        stack.extend(_subparsers(p).values())
    for stem in BENCH_STEMS:
        everything |= _bench_flags(stem)
    assert flag in everything, f"{where}: `{span}`: no fnlab command or bench script has {flag}"


def _bench_commands() -> list[tuple[str, list[str]]]:
    out = [(w, _words(s)) for w, s in SPANS if s.startswith("python bench/")]
    for path in DOCS:
        for line, m in _lines(path, re.compile(r"^```(?:bash|sh|shell|console)?\n(.*?)^```", re.S | re.M)):
            for cmd in re.sub(r"\\\n\s*", " ", m.group(1)).splitlines():
                if cmd.startswith("python bench/"):
                    out.append((f"{path.relative_to(REPO)}:{line}", _words(cmd)))
    return out


BENCH_COMMANDS = _bench_commands()


@pytest.mark.parametrize("where,words", BENCH_COMMANDS, ids=[f"{w}:{' '.join(x[:2])}" for w, x in BENCH_COMMANDS])
def test_bench_command_flags_exist(where: str, words: list[str]):
    script = REPO / words[1]
    assert script.is_file(), f"{where}: {words[1]} does not exist"
    known = _bench_flags(script.stem)
    for flag in _flags(words[2:]):
        assert flag in known, f"{where}: `{' '.join(words)}`: {words[1]} defines no {flag}"


def test_the_checks_catch_a_wrong_name_path_and_flag(fnlab_parser):
    assert not _resolves("fnlab.posterior.no_such_thing")
    assert _resolves("fnlab.posterior.RunningGaussianStats")
    parser, rest = _command_parser(fnlab_parser, ["train", "--no-such-flag", "1"])
    assert parser.prog.endswith("train") and "--no-such-flag" not in _options(parser) and _flags(rest) == ["--no-such-flag"]
    assert "--queue-size" in _options(parser)


# ----------------------------------------------------------------------------- bench/results provenance
BEING_REMEASURED = ()  # listed once re-measured (PROVENANCE.md says so)


def test_every_result_file_has_provenance_and_every_row_a_file():
    results = REPO / "bench" / "results"
    table = (results / "PROVENANCE.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    files = {str(p.relative_to(results)) for p in results.rglob("*") if p.is_file() and p.name != "PROVENANCE.md"}
    missing = {f for f in files - rows if not f.startswith(BEING_REMEASURED)}
    assert not missing, f"bench/results/PROVENANCE.md lists no row for {sorted(missing)}"
    assert rows <= files, f"bench/results/PROVENANCE.md lists files that do not exist: {sorted(rows - files)}"
    for row in re.findall(r"^\| `[^`]+` \| `([^`]+)` \| [^|]+ \| `([0-9a-f]{7,40})` \|", table, re.M):
        assert row[0].startswith(("python bench/", "several ")), f"PROVENANCE.md: a command that is not a bench run: {row}"


def _make_bench_commands() -> list[tuple[str, list[str]]]:
    """Every ``bench/NAME.py ...`` command of the Makefile's ``BENCH_*`` lines and of ``bench/README.md``."""
    out = []
    for line in (REPO / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith("BENCH_") and "bench/" in line:
            for part in re.split(r"&&|;|\{|\}|>", line.partition("=")[2]):
                words = _words(part.replace("$(PY)", "python"))
                if len(words) > 1 and words[0] == "python":
                    out.append((f"Makefile:{line.split()[0]}", words))
    text = (REPO / "bench" / "README.md").read_text(encoding="utf-8")
    for line, m in _lines(REPO / "bench" / "README.md", re.compile(r"`(python bench/[^`]+)`"), text):
        out.append((f"bench/README.md:{line}", _words(m.group(1).replace("=G", "=0.0").replace("-G", "-0.0"))))
    return out


MAKE_BENCH = _make_bench_commands()


def test_make_bench_names_every_table_target():
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    tables = re.search(r"^BENCH_TABLES := (.*)$", make, re.M).group(1).split()
    assert tables and all(f"BENCH_{t} =" in make for t in tables)
    readme = (REPO / "bench" / "README.md").read_text(encoding="utf-8")
    assert all(f"`bench-{t}`" in readme for t in tables), "bench/README.md maps every make bench target"


@pytest.mark.parametrize("where,words", MAKE_BENCH, ids=[f"{w}:{' '.join(x[1:3])}" for w, x in MAKE_BENCH])
def test_make_bench_command_flags_exist(where: str, words: list[str]):
    test_bench_command_flags_exist(where, words)
