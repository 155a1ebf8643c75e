"""The package's shape: no import cycle, no forbidden arrow, no reaching into private names.

The import graph is read with `ast` from the sources, imports inside functions included (those
under `if TYPE_CHECKING:` do not run, so they do not count).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlx_qwen3_tts"
ROOT = "mlx_qwen3_tts"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports(module: str) -> dict[str, set[str]]:
    """The package modules `module` imports, each with the names it takes from it."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    out: dict[str, set[str]] = {}
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT:
                    out.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if target.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # `from . import audio` imports the module itself
                    out.setdefault(sub, set())
                else:
                    out.setdefault(target, set()).add(alias.name)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def find_cycle(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_is_read():
    # The reader itself: the loader imports the facade, the facade the synthesis engine.
    assert "mlx_qwen3_tts.tts" in GRAPH["mlx_qwen3_tts.loading"]
    assert "mlx_qwen3_tts.synthesis" in GRAPH["mlx_qwen3_tts.tts"]
    assert find_cycle({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}}) == ["a", "b", "c", "a"]


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None


def _modules_of(prefix: str) -> list[str]:
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


# (importers, modules they must never import): layout.md's arrows, plus the leaf modules.
FORBIDDEN = [
    ("models", ["prompt", "sampling", "generate", "request", "synthesis", "loading", "cli", "server",
                "convert", "tts", "text_stream", "runtime", "testing"]),
    ("generate", ["cli", "server", "convert", "tts", "synthesis", "loading"]),
    ("sampling", ["cli", "server", "convert", "generate", "request", "synthesis"]),
    ("prompt", ["cli", "server", "convert", "generate", "request", "synthesis"]),
    ("request", ["cli", "server", "convert", "generate", "synthesis", "tts", "loading"]),
    ("synthesis", ["cli", "server", "convert", "tts", "loading", "text_stream"]),
    ("weights", [m.removeprefix(ROOT + ".") for m in MODULES if m not in (ROOT, f"{ROOT}.errors",
                                                                          f"{ROOT}.weights")]),
    ("runtime", [m.removeprefix(ROOT + ".") for m in MODULES if m != f"{ROOT}.runtime"]),
]


@pytest.mark.parametrize("importer,forbidden", FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_forbidden_arrows(importer, forbidden):
    bad = {f if f == ROOT else f"{ROOT}.{f}" for f in forbidden}  # ROOT: the package's __init__
    assert bad <= set(MODULES), f"not modules of the package: {sorted(bad - set(MODULES))}"
    for module in _modules_of(f"{ROOT}.{importer}"):
        hits = sorted(t for t in GRAPH[module] if any(t == b or t.startswith(b + ".") for b in bad))
        assert not hits, f"{module} imports {hits}"
    assert all(f"{ROOT}.{importer}" != b for b in bad)


def test_nothing_in_the_package_imports_tests_or_test_helpers():
    for module, targets in GRAPH.items():
        if module != f"{ROOT}.testing":
            assert f"{ROOT}.testing" not in targets, module


@pytest.mark.parametrize("front_end", ["cli", "server", "convert"])
def test_front_ends_use_the_public_api_and_the_loader_only(front_end):
    allowed = {ROOT, f"{ROOT}.loading"}
    if front_end == "cli":
        allowed.add(f"{ROOT}.server")  # `mlx-qwen3-tts serve` hands over to the server's main
    assert set(GRAPH[f"{ROOT}.{front_end}"]) <= allowed, GRAPH[f"{ROOT}.{front_end}"]


def test_no_module_takes_another_modules_private_names():
    for module, targets in GRAPH.items():
        for target, names in targets.items():
            private = sorted(n for n in names if n.startswith("_") and not n.startswith("__"))
            assert not private, f"{module} imports {private} from {target}"


def test_no_module_reaches_into_another_modules_private_attributes():
    """`other._name` where `other` is a package module bound in this file."""
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound = {alias.asname or alias.name.split(".")[-1] for node in ast.walk(tree)
                 if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
                 if f"{_resolve(module, node) if isinstance(node, ast.ImportFrom) else ''}.{alias.name}"
                 .lstrip(".") in MODULES or alias.name in MODULES}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                pytest.fail(f"{module}:{node.lineno} reaches into {node.value.id}.{node.attr}")
