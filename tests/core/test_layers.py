"""The dependency rule of the house (README, "What is here"): imports go one way, down the layers

    cli  ->  draw, merchant, admin, public  ->  auth  ->  adapters  ->  campaign  ->  pool  ->  core

with `models`, `extensions` and `config` the ground beside `core`. The four surfaces do not import
one another, and no two modules import each other, directly or round a circle. Read from the
source with `ast`, every import counted, those inside functions too.
"""

from __future__ import annotations

import ast

from tests.helpers import ROOT

SERVER = ROOT / "server"
GROUND = ("core", "models", "extensions", "config")
LAYERS = {
    **dict.fromkeys(GROUND, 0),
    "pool": 1,
    "campaign": 2,
    "adapters": 3,
    "auth": 4,
    **dict.fromkeys(("draw", "merchant", "admin", "public"), 5),
    "cli": 6,
}
FACTORY = 7  # server/__init__.py builds the app from everything


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(SERVER.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return found


def imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The server modules `name` imports, anywhere in it."""
    package = name if (SERVER / "/".join(name.split(".")[1:]) / "__init__.py").exists() else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("server")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if not base.startswith("server"):
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found - {name}


def layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) == 1:
        return "server", FACTORY
    return parts[1], LAYERS[parts[1]]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, tree, set(found)) for name, tree in found.items()}


def test_every_package_has_its_layer():
    assert {layer(name)[0] for name in graph()} - {"server"} == set(LAYERS)


def test_imports_only_go_down_the_layers_and_surfaces_do_not_import_one_another():
    wrong = []
    for module, targets in graph().items():
        package, rank = layer(module)
        for target in targets:
            other, other_rank = layer(target)
            if other == package or (rank == other_rank == 0):
                continue
            if other_rank >= rank:
                wrong.append(f"{module} -> {target}")
    assert wrong == [], "imports against the dependency rule:\n" + "\n".join(wrong)


def test_no_module_imports_itself_round_a_circle():
    edges = graph()
    # A package's __init__ importing its own modules registers their routes (the blueprint's face):
    # those modules importing the package back for `bp` is the Flask pattern, not a circle of rules.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = iter(range(10**6))

    def visit(node: str) -> None:
        index[node] = low[node] = next(counter)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert circles == []


def test_the_rule_catches_an_import_that_breaks_it():
    """The reading above sees what it should: an upward import, and an import inside a function."""
    planted = ast.parse("from ..draw.claim import draw\n")
    known = set(modules())
    upward = imports("server.pool.coupons", planted, known)
    assert upward == {"server.draw.claim"}
    assert layer("server.draw.claim")[1] > layer("server.pool.coupons")[1]
    nested = ast.parse("def late():\n    from .coupons import status\n")
    assert imports("server.pool.rollup", nested, known) == {"server.pool.coupons"}
