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


def _module_name(path: Path, package_dir: Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package_dir: Path) -> dict[str, Path]:
    return {_module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}


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


def import_graph(package_dir: Path = SRC) -> nx.DiGraph:
    """Modules of the package in ``package_dir`` → the package's modules each imports."""
    modules = _modules(package_dir)
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
    assert graph.has_edge("kdiqa.distill", "kdiqa.distill.methods")  # from . import methods
    assert graph.has_edge("kdiqa.models.zoo", "kdiqa.checkpoint")  # inside a function


def test_graph_finds_a_deferred_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import b\n")
    (pkg / "a.py").write_text("import os\nfrom .sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import g\n")
    graph = import_graph(pkg)
    assert set(graph.edges) == {("pkg.sub", "pkg.sub.b"), ("pkg.a", "pkg.sub.b"), ("pkg.sub.b", "pkg.a")}
    assert [sorted(c) for c in nx.simple_cycles(graph)] == [["pkg.a", "pkg.sub.b"]]


def test_no_import_cycles():
    graph = import_graph()
    cycles = sorted(" → ".join([*c, c[0]]) for c in nx.simple_cycles(graph))
    assert not cycles, "import cycles among kdiqa's modules:\n" + "\n".join(cycles)
