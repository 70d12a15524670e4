"""No import cycle between the project's own modules, function-local and TYPE_CHECKING imports included.

The graph is read from the source with `ast` (nothing is imported): a module depends on every module of
ours it names in an `import` or `from ... import` anywhere in its body, `from x import y` meaning x.y
when y is a submodule of x, and x otherwise.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from personaflow.settings import REPO_ROOT

PACKAGES = (
    "personaflow", "ingest", "quality", "training", "profiles", "report", "experiments", "serving",
    "feature_repo", "dags",
)  # fmt: skip


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the given top-level folders."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _known(name: str, modules: set[str]) -> str | None:
    """`name` if it is one of ours, else its longest prefix that is (None when it is not ours at all)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imported_modules(module: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ours that `module` imports, anywhere in its file."""
    is_package = path.name == "__init__.py"
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        deps.update(dep for name in names if (dep := _known(name, modules)) and dep != module)
    return deps


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    files = module_files(root, packages)
    return {module: imported_modules(module, path, set(files)) for module, path in files.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, as [a, b, ..., a] (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:  # the graphs here are a few hundred modules: recursion is fine
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(component, graph) for component in components]


def _cycle_in(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A concrete cycle through the component's smallest member (breadth-first, so a shortest one)."""
    start = min(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for dep in sorted(graph.get(node, ()) & component):
                if dep == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if dep not in parent:
                    parent[dep] = node
                    following.append(dep)
        frontier = following
    raise AssertionError(f"no cycle in component {sorted(component)}")  # Tarjan said there is one


def test_no_import_cycle_between_project_modules():
    graph = import_graph(REPO_ROOT)
    assert "training.registry.pointer" in graph and "profiles.segments" in graph  # the walk found them
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


# training/ reads top to bottom: each part imports only the parts before it (README, "Architecture").
TRAINING_ORDER = (
    "data", "evaluation", "models", "rerank", "export", "recipe", "gate", "registry", "report", "pipeline",
    "external",
)  # fmt: skip


def test_training_parts_import_only_the_parts_before_them():
    def part(module: str) -> int | None:
        name = module.split(".")
        return TRAINING_ORDER.index(name[1]) if name[0] == "training" and len(name) > 1 else None

    upward = [
        f"{module} -> {dep}"
        for module, deps in import_graph(REPO_ROOT).items()
        for dep in deps
        if part(module) is not None and part(dep) is not None and part(dep) > part(module)
    ]
    assert not upward, "training/ imports against the flow:\n" + "\n".join(sorted(upward))


def test_cycle_finder_on_a_tiny_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["e", "e"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize(
    "body",
    [
        "def f():\n    from pkg.a import thing\n",  # function-local
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n",
        "from pkg import a\n",  # a submodule named in `from x import y`
        "from . import a\n",  # relative
    ],
)
def test_graph_sees_every_kind_of_import(tmp_path, body):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import helper\n")
    (tmp_path / "pkg" / "b.py").write_text(body)
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.b"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
