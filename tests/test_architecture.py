"""The layers point one way (docs/architecture.md), and no module imports itself back.

    radius  <  domain  <  storage  <  services  <  web | cli

``config`` is importable by every layer of ``controller`` and itself imports only
``domain`` and ``radius``; ``radius`` imports nothing of ``controller``; ``web`` and
``cli`` never import each other; the composition root (``controller.cli.serve``) may
import every layer. Every module of ``controller/`` and ``radius/`` is parsed with
``ast``: module-level imports, imports inside functions and ``if TYPE_CHECKING:``
imports all count, so neither a late import nor a type-only one hides an edge.
"""

from __future__ import annotations

import ast
import itertools
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("controller", "radius")
COMPOSITION_ROOT = "controller.cli.serve"
RANK: Mapping[str, int] = {
    "radius": 0,
    "domain": 1,
    "storage": 2,
    "services": 3,
    "web": 4,
    "cli": 4,
}
LAYERS = ("domain", "config", "storage", "services", "web", "cli")  # controller.<layer>

# A library is called from one layer of ours (STYLE.md: its errors are mapped there).
LIBRARIES: Mapping[str, tuple[str, ...]] = {
    "redis": ("controller.storage",),
    "hiredis": ("controller.storage",),
    "duckdb": ("controller.storage.archive",),
    "aiohttp.web": ("controller.web", COMPOSITION_ROOT),
    "jinja2": ("controller.web",),
    "pydantic": ("controller.config",),  # the config schema; the runtime types are dataclasses
    "pydantic_core": ("controller.config",),
    "pyrad": (),  # test tooling only (tests/support/pyrad_client.py)
}


@dataclass(frozen=True, slots=True)
class Edge:
    importer: str
    imported: str
    line: int
    kind: str  # module | function | type-checking | package (a parent package's __init__)

    def __str__(self) -> str:
        where = {
            "module": "",
            "function": ", inside a function",
            "type-checking": ", under TYPE_CHECKING",
            "package": ", its package's __init__",
        }[self.kind]
        return f"{self.importer} -> {self.imported} (line {self.line}{where})"


def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under the packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__main__":
                parts = (*parts[:-1], "__main__")
            elif parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with where it sits: module, function or type-checking."""

    def walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, kind
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, "type-checking" if kind == "type-checking" else "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), "type-checking")
                for stmt in child.orelse:
                    yield from walk(ast.Module(body=[stmt], type_ignores=[]), kind)
            else:
                yield from walk(child, kind)

    yield from walk(tree, "module")


def imported_names(name: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names one import statement brings in (absolute; relative resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def edges(root: Path) -> tuple[list[Edge], list[tuple[str, str, int]]]:
    """Edges between our modules, and (importer, library, line) for everything else."""
    ours = modules(root)
    found: list[Edge] = []
    libraries: list[tuple[str, str, int]] = []
    for name, path in ours.items():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node, kind in _imports(tree):
            names = imported_names(name, path, node)
            if isinstance(node, ast.ImportFrom):
                # ``from pkg import x``: the submodule pkg.x if there is one, else pkg
                *members, base = names
                targets = [m for m in members if m in ours] or [base]
            else:
                targets = names
            for target in targets:
                if target.split(".")[0] not in PACKAGES:
                    libraries.append((name, target, node.lineno))
                    if isinstance(node, ast.ImportFrom):
                        libraries.extend((name, m, node.lineno) for m in members)
                    continue
                module = target
                while module not in ours and "." in module:  # ``import a.b.name``
                    module = module.rsplit(".", 1)[0]
                found.append(Edge(name, module, node.lineno, kind))
                # importing a.b.c runs a/__init__ and a/b/__init__ first (unless inside them)
                parts = module.split(".")
                for i in range(1, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in ours and not (name == parent or name.startswith(parent + ".")):
                        found.append(Edge(name, parent, node.lineno, "package"))
    return found, libraries


def layer_of(module: str) -> str:
    if module == "radius" or module.startswith("radius."):
        return "radius"
    if module == "controller":
        return "package"
    second = module.split(".")[1]
    return second if second in LAYERS else "unplaced"


def allowed(importer: str, imported: str) -> bool:
    a, b = layer_of(importer), layer_of(imported)
    if "unplaced" in (a, b):
        return False
    if a == "radius":
        return b == "radius"  # the protocol side knows nothing of the controller
    if a == "package":
        return False  # controller/__init__.py holds __version__ and imports nothing
    if importer == COMPOSITION_ROOT or b == "package":
        return True
    if b == "config":
        return True
    if a == "config":
        return b in ("config", "domain", "radius")
    return a == b or RANK[b] < RANK[a]


def upward(found: Iterable[Edge]) -> list[Edge]:
    """Edges against the layers (a parent package's edge repeats its module's: left out)."""
    return [
        e
        for e in found
        if e.kind != "package" and e.importer != e.imported and not allowed(e.importer, e.imported)
    ]


def cycles(found: Iterable[Edge]) -> list[list[Edge]]:
    """One concrete cycle per strongly connected group of modules (Tarjan)."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in found:
        graph.setdefault(e.importer, {}).setdefault(e.imported, e)
        graph.setdefault(e.imported, {})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    out = []
    for group in groups:
        members = set(group)
        start = group[0]
        path, seen, node = [start], {start}, start
        while True:  # walk inside the group until it closes
            nxt = next(w for w in sorted(graph[node]) if w in members)
            if nxt in seen:
                path = [*path[path.index(nxt) :], nxt]
                break
            path.append(nxt)
            seen.add(nxt)
            node = nxt
        out.append([graph[a][b] for a, b in itertools.pairwise(path)])
    return out


def library_misplaced(libraries: Iterable[tuple[str, str, int]]) -> list[str]:
    wrong = []
    for importer, target, line in libraries:
        for library, homes in LIBRARIES.items():
            ours = target == library or target.startswith(library + ".")
            if ours and not any(importer == h or importer.startswith(h + ".") for h in homes):
                wrong.append(f"{importer} imports {target} (line {line}); belongs in {homes}")
    return wrong


# --------------------------------------------------------------------------- the checks


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in modules(ROOT) if layer_of(m) == "unplaced"]
    assert unplaced == [], f"modules outside every layer (controller.<layer>.…): {unplaced}"


def test_no_module_imports_a_layer_above_it() -> None:
    found, _ = edges(ROOT)
    wrong = [f"{e}: {layer_of(e.importer)} -> {layer_of(e.imported)}" for e in upward(found)]
    assert wrong == [], "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    found, _ = edges(ROOT)
    loops = [" ; ".join(str(e) for e in loop) for loop in cycles(found)]
    assert loops == [], "import cycles:\n" + "\n".join(loops)


def test_radius_imports_nothing_of_the_controller() -> None:
    found, _ = edges(ROOT)
    assert [str(e) for e in found if e.importer.startswith("radius") and
            e.imported.startswith("controller")] == []  # fmt: skip


def test_libraries_stay_in_their_layer() -> None:
    _, libraries = edges(ROOT)
    assert library_misplaced(libraries) == []


def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    """The checker itself: a domain module importing the web layer (inside a function,
    where a late import would hide it) and a services module importing a storage module
    that imports it back (only for type checking) are both named, edge by edge."""
    files = {
        "controller/__init__.py": "",
        "controller/domain/__init__.py": "",
        "controller/domain/rules.py": """
            def late():
                from controller.web.routes import handler
                return handler
        """,
        "controller/storage/__init__.py": "",
        "controller/storage/store.py": """
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from controller.services.loop import Loop
        """,
        "controller/services/__init__.py": "",
        "controller/services/loop.py": "from controller.storage import store\n",
        "controller/web/__init__.py": "",
        "controller/web/routes.py": "handler = None\n",
        "controller/cli/__init__.py": "",
        "controller/cli/serve.py": "from controller.web import routes\n",
        "radius/__init__.py": "from controller.domain import rules\n",
    }
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    found, _ = edges(tmp_path)
    assert [str(e) for e in upward(found)] == [
        "controller.domain.rules -> controller.web.routes (line 3, inside a function)",
        "controller.storage.store -> controller.services.loop (line 4, under TYPE_CHECKING)",
        "radius -> controller.domain.rules (line 1)",
    ]
    assert [[str(e) for e in loop] for loop in cycles(found)] == [
        [
            "controller.services.loop -> controller.storage.store (line 1)",
            "controller.storage.store -> controller.services.loop (line 4, under TYPE_CHECKING)",
        ]
    ]
