"""The package layout's rules: michi_core never imports app or training, the app never imports
training, and no module imports itself back through others (function-local imports included)."""

import ast
import collections
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("michi_core", "app", "training")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            edges[name].update(c for c in candidates if c in modules and c != name)
    return edges


def test_michi_core_never_imports_the_app_or_training_and_the_app_never_imports_training():
    edges = _import_graph()
    forbidden = [(a, b) for a, targets in edges.items() for b in targets
                 if (a.startswith("michi_core") and b.split(".")[0] in ("app", "training"))
                 or (a.startswith("app") and b.startswith("training"))]
    assert not forbidden, f"imports across the layout's rules: {forbidden}"


def test_the_import_graph_has_no_circle():
    edges = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in list(edges):
        if module not in index:
            visit(module)
    assert not circles, f"modules that import each other (directly or through others): {circles}"
