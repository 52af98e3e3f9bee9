"""The shape of the code: no import cycle among stedi's modules (counting imports deferred into
functions), no source module over 450 lines, each module opening with a docstring saying its idea,
snapshot properties named in one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import stedi

PACKAGE = Path(stedi.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
MAX_LINES = 450


def _graph() -> dict[str, set[str]]:
    grimp = pytest.importorskip("grimp")
    # Imports under `if TYPE_CHECKING:` never run: they name types for annotations only.
    graph = grimp.build_graph("stedi", cache_dir=None, exclude_type_checking_imports=True)
    modules = {m for m in graph.modules if m == "stedi" or m.startswith("stedi.")}
    return {m: {d for d in graph.find_modules_directly_imported_by(m) if d in modules} for m in modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_stedis_modules():
    edges = _graph()
    assert "stedi.runner" in edges and "stedi.jobs" in edges["stedi.runner"]  # deferred imports are counted
    assert _cycles(edges) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_is_small_and_says_its_idea(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name}: {len(text.splitlines())} lines"
    doc = ast.get_docstring(ast.parse(text))
    assert doc and len(doc.split()) >= 5, f"{path.name} opens with no docstring saying its idea"


def test_snapshot_properties_are_named_in_one_module():
    from stedi import properties

    names = {v.removeprefix("stedi.") for v in properties.ALL}
    pattern = re.compile(r"[\"']stedi\.(" + "|".join(map(re.escape, names)) + r")[\"']")
    elsewhere = [str(p.relative_to(PACKAGE)) for p in MODULES if p.name != "properties.py" and pattern.search(p.read_text())]
    assert elsewhere == []
