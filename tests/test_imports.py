"""The package's import graph, read from the source (module-level and function-local imports alike): the library
(``gan_cot``) never imports the lab (``gan_cot_lab``), and no two modules of either import each other in a cycle."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gan_cot", "gan_cot_lab")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every module of the two packages -> the modules of the two packages it imports."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                targets |= {f"{base}.{a.name}" for a in node.names} | {base}
        resolved = set()
        for t in targets:
            while t and t not in modules:  # a name imported from a module, or a module's package
                t = t.rpartition(".")[0]
            while t:  # importing a module runs its packages' __init__ first
                if t in modules and t != name and not name.startswith(t + "."):  # not its own package
                    resolved.add(t)
                t = t.rpartition(".")[0]
        graph[name] = resolved
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_library_never_imports_the_lab():
    graph = import_graph()
    assert "gan_cot.trainer" in graph and "gan_cot_lab.comparison" in graph
    upward = {
        m: sorted(t for t in ts if t.startswith("gan_cot_lab")) for m, ts in graph.items() if m.startswith("gan_cot.")
    }
    assert {m: ts for m, ts in upward.items() if ts} == {}


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
