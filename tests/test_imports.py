"""kdiqa's modules import each other without cycles.

The graph has an edge A → B when module A imports kdiqa module B anywhere: at the top of the file
or inside a function (a deferred import still closes a cycle, it only hides it until run time).
Imports under ``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import kdiqa

SRC = Path(kdiqa.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node):
            children = node.orelse
        stack.extend(children)


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The kdiqa modules an import statement loads (``from pkg import sub`` loads ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in known}
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in known:
            out.add(sub)
        elif base in known:
            out.add(base)
    return out


def import_graph() -> nx.DiGraph:
    modules = _modules()
    known = set(modules)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _import_nodes(tree):
            for target in _targets(name, path.name == "__init__.py", node, known):
                if target != name:
                    graph.add_edge(name, target)
    return graph


def test_graph_sees_top_level_and_deferred_imports():
    graph = import_graph()
    assert len(graph) > 40
    assert graph.has_edge("kdiqa.models.zoo", "kdiqa.models.iqa")  # top level, relative
    assert graph.has_edge("kdiqa.hub", "kdiqa.checkpoint")
    assert graph.has_edge("kdiqa.cli", "kdiqa.hub")  # inside a function


def test_no_import_cycles():
    graph = import_graph()
    cycles = sorted(" → ".join([*c, c[0]]) for c in nx.simple_cycles(graph))
    assert not cycles, "import cycles among kdiqa's modules:\n" + "\n".join(cycles)
