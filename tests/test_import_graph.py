"""The package's imports run one way: the module-level imports between stsearch's modules form no cycle
(imports inside functions, used to keep light commands light, and ``TYPE_CHECKING`` blocks are not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

import stsearch

ROOT = Path(stsearch.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The stsearch modules ``path`` imports at module level."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    body = list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If) and not _is_type_checking(node):
            body.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            body.extend(node.body)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # "from . import x" names a submodule
                target = f"{base}.{alias.name}"
                out.add(target if target in modules else base)
    return {m for m in out if m in modules and m != name}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_module_level_imports_have_no_cycle():
    files = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(f) for f in files}
    graph = {_module_name(f): _imports(f, modules) for f in files}
    # a package's __init__ importing its own submodules is the usual re-export, not a cycle
    for pkg in list(graph):
        graph[pkg] = {m for m in graph[pkg] if not (pkg in modules and m.startswith(pkg + ".")
                                                    and (ROOT.parent / pkg.replace(".", "/") / "__init__.py").is_file())}
    assert len(graph) > 50 and graph["stsearch.space.schema"] >= {"stsearch.space.types", "stsearch.space.groups"}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_space_modules_import_downwards():
    """types <- groups / user / training <- sampling <- screening, and schema on top (module level)."""
    files = sorted((ROOT / "space").glob("*.py"))
    modules = {_module_name(f) for f in ROOT.rglob("*.py")}
    graph = {_module_name(f): {m for m in _imports(f, modules) if m.startswith("stsearch.space.")} for f in files}
    assert graph["stsearch.space.types"] == set()
    for low in ("types", "groups", "user", "training", "sampling", "screening"):
        assert "stsearch.space.schema" not in graph[f"stsearch.space.{low}"], low
    assert "stsearch.space.screening" not in graph["stsearch.space.sampling"]
