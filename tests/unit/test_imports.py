"""The import graph of ``features``, ``training`` and ``serving``: no circle between files, training never imports
serving, and no module over 500 lines.

Imports are read with ``ast`` from the source, so function-level (lazy) imports count as much as top-level ones,
and nothing is imported to check. ``from a.b import c`` is an edge to the module ``a.b.c`` when that is a file,
else to ``a.b``; a package ``__init__`` that an import only passes through is not an edge. A call of
``importlib.import_module`` or ``__import__`` with a literal name counts as an import too, and so do imports
under ``if TYPE_CHECKING:`` (a knot of type-only imports is still one a reader has to untie). A name in a string
that another program imports (``bentoml serve serving.service:SalesML``) is not an import of this process.

Run: ``.venv/bin/python -m pytest tests/unit/test_imports.py``
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("features", "training", "serving")
MAX_LINES = 500


def _module_files(root: Path = REPO) -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imported_names(module: str, path: Path) -> list[str]:
    """The dotted names a module imports anywhere in its source (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names += [f"{base}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module -> the modules of the three packages it imports (the longest dotted prefix that is a module)."""
    modules = _module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            parts = name.split(".")
            hit = next(
                (".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in modules),
                None,
            )
            if hit is not None and hit != module:
                targets.add(hit)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """Per knot (a strongly connected group of modules): one shortest circle through it (its first module repeated
    at the end) and all the modules of the knot."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for group in groups:
        start = min(group)
        paths = {start: [start]}
        frontier = [start]
        circle = None
        while frontier and circle is None:  # breadth first, inside the group, back to start
            nxt = []
            for v in frontier:
                for w in sorted(graph[v] & group):
                    if w == start:
                        circle = [*paths[v], start]
                        break
                    if w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
                if circle:
                    break
            frontier = nxt
        found.append((circle, sorted(group)))
    return sorted(found)


def test_no_import_circle_between_files() -> None:
    found = cycles(import_graph())
    assert not found, (
        "import circles (break each by moving the shared part down or passing it in):\n"
        + "\n".join(
            " -> ".join(circle) + (f"  (the knot: {', '.join(knot)})" if len(knot) > len(circle) - 1 else "")
            for circle, knot in found
        )
    )


# The flow of DESIGN.md: features <- training <- serving (the left one is imported by the right one).
MAY_IMPORT = {"features": {"features"}, "training": {"features", "training"}, "serving": set(PACKAGES)}


def test_training_never_imports_serving_and_features_neither() -> None:
    edges = [
        f"{src} imports {dst}"
        for src, targets in sorted(import_graph().items())
        for dst in sorted(targets)
        if dst.split(".")[0] not in MAY_IMPORT[src.split(".")[0]]
    ]
    assert not edges, (
        "imports against the flow features <- training <- serving (training starts the service by its import "
        "string, serving.service:SalesML):\n" + "\n".join(edges)
    )


def test_no_module_over_500_lines() -> None:
    long = {}
    for path in _module_files().values():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long[path.relative_to(REPO).as_posix()] = lines
    assert not long, f"modules over {MAX_LINES} lines (split them along their stages): {long}"


def test_the_check_sees_lazy_imports_and_names_the_circle(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "training" / "a.py").write_text("from training.b import thing\n")
    (tmp_path / "training" / "b.py").write_text("def thing():\n    from . import c\n")
    (tmp_path / "training" / "c.py").write_text(
        "import training.a\nimport importlib\nimportlib.import_module('serving.x')\n"
    )
    (tmp_path / "serving" / "x.py").write_text("")
    graph = import_graph(tmp_path)
    circle = ["training.a", "training.b", "training.c", "training.a"]
    assert cycles(graph) == [(circle, circle[:3])]
    assert graph["training.c"] == {"training.a", "serving.x"}
