"""Imports point one way: every module's imports, read from its source (AST), against :data:`LAYERS`.

:data:`LAYERS` is the one table of the house's layers (``docs/architecture.md`` explains it).
A module belongs to the longest entry that prefixes its name. The rules:

* **No arrow up.** A module imports only from its own unit or from a unit in a lower layer.
  Units that share a layer are independent: neither imports the other. Every import counts,
  including ones inside functions and under ``TYPE_CHECKING`` (a dependency deferred is still
  a dependency).
* **No circles.** No two modules import each other, directly or round a loop; and within every
  package, its sub-packages and modules (each taken with everything under it) form no loop.
* **Nothing unplaced.** Every module of ``bitnet_sdk``, ``plugins/`` and ``kernels/`` falls
  under some entry, so a new package has to be given its place here.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Lowest layer first. Generic libraries (nothing of ours below them) sit at the bottom; the
#: core (``ternary`` … ``testing``) never reaches the store, the services or the web; plugins
#: use only the core; the web's infrastructure (``server``) sits under the handlers (``api``),
#: which Connexion reaches by operationId, so ``server`` never imports ``api``.
LAYERS: list[list[str]] = [
    # the package root (``__version__``, lazy public functions: it imports nothing at import
    # time), LLVM IR builders, a generic ASGI server on Tornado
    ["bitnet_sdk", "bitnet_kernels", "bitnet_sdk.server.asgi"],
    ["bitnet_sdk.ternary"],  # the b1.58 math
    ["bitnet_sdk.formats"],  # packed ternary tensors
    ["bitnet_sdk.backends"],  # the plugin contract and registry
    ["bitnet_sdk.model"],  # GGUF files and the LLM runtime
    ["bitnet_sdk.dense"],  # ternary dense models (ONNX imports)
    # the quantizer; test-model builders; load/validate any model file (LLM or dense)
    ["bitnet_sdk.quantization", "bitnet_sdk.testing", "bitnet_sdk.loading"],
    ["bitnet_numpy", "bitnet_llvm", "bitnet_mlx"],  # bundled backend plugins
    ["bitnet_sdk.config"],  # server settings
    ["bitnet_sdk.store"],  # the database
    ["bitnet_sdk.auth"],  # accounts, tokens, API keys, scopes
    ["bitnet_sdk.service"],  # stateful services: registry, jobs, inference, accounting
    ["bitnet_sdk.server"],  # the web: app factory, middleware, context, problems, WebSocket
    ["bitnet_sdk.api"],  # REST handlers (one module per spec group)
    ["bitnet_sdk.cli"],  # the `bitnet` command
]

#: Top-level packages scanned, and the folder each lives in.
SOURCES = {"bitnet_sdk": ROOT, "bitnet_numpy": ROOT / "plugins", "bitnet_llvm": ROOT / "plugins",
           "bitnet_mlx": ROOT / "plugins", "bitnet_kernels": ROOT / "kernels"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top, folder in SOURCES.items():
        for path in sorted((folder / top).rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, known: Mapping[str, Path]) -> Iterator[tuple[str, int]]:
    """Every module ``module`` imports, with the line.

    ``from p import m`` names the module ``p.m`` when there is one, and ``p`` itself only when
    some name comes from ``p``'s ``__init__``.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            if len(submodules) < len(node.names):  # some names come from the package itself
                yield target, node.lineno
            yield from ((s, node.lineno) for s in submodules)


def _graph() -> dict[str, dict[str, int]]:
    known = _modules()
    graph: dict[str, dict[str, int]] = {m: {} for m in known}
    for module, path in known.items():
        for target, line in _imported(module, path, known):
            while target and target not in known:  # ``import a.b.name`` → module ``a.b``
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].setdefault(target, line)
    return graph


def _unit(module: str) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for level, units in enumerate(LAYERS):
        for unit in units:
            if (module == unit or module.startswith(unit + ".")) and (
                    best is None or len(unit) > len(best[1])):
                best = (level, unit)
    return best


def _cycles(nodes: Iterable[str], edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


GRAPH = _graph()


def test_every_module_has_a_place() -> None:
    assert [m for m in GRAPH if _unit(m) is None] == []


def test_no_arrow_points_up_or_sideways() -> None:
    wrong = []
    for module, targets in sorted(GRAPH.items()):
        here = _unit(module)
        for target, line in sorted(targets.items()):
            there = _unit(target)
            if here is None or there is None or here[1] == there[1]:
                continue
            if there[0] >= here[0]:
                side = "up" if there[0] > here[0] else "sideways"
                wrong.append(f"{module}:{line} imports {target} ({side}: {here[1]} → {there[1]})")
    assert not wrong, "\n".join(wrong)


def test_no_module_cycles() -> None:
    cycles = _cycles(GRAPH, GRAPH)
    assert not cycles, "\n".join(" ⇄ ".join(c) for c in cycles)


def test_no_cycles_between_siblings() -> None:
    """Within each package, its children (each with all below it) import each other in no loop."""
    children: dict[str, set[str]] = defaultdict(set)
    for module in GRAPH:
        parts = module.split(".")
        for depth in range(1, len(parts)):
            children[".".join(parts[:depth])].add(".".join(parts[: depth + 1]))
    wrong = []
    for package, kids in sorted(children.items()):
        def child_of(module: str, package: str = package) -> str | None:
            if not module.startswith(package + "."):
                return None
            return package + "." + module[len(package) + 1:].split(".")[0]

        edges: dict[str, set[str]] = defaultdict(set)
        for module, targets in GRAPH.items():
            source = child_of(module)
            for target in targets:
                sink = child_of(target)
                if source and sink and source != sink:
                    edges[source].add(sink)
        wrong += [f"in {package}: {' ⇄ '.join(c)}" for c in _cycles(kids, edges)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", ["bitnet_sdk.ternary", "bitnet_sdk.model", "bitnet_sdk.dense"])
def test_the_core_reaches_no_store_service_or_web(module: str) -> None:
    """A check of the checker itself: the table puts these below every stateful layer."""
    core = _unit(module)
    assert core is not None
    for outer in ("bitnet_sdk.store", "bitnet_sdk.service", "bitnet_sdk.server", "bitnet_sdk.api"):
        other = _unit(outer)
        assert other is not None and other[0] > core[0]
