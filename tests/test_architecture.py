"""The code's shape: no import cycle among tagd's and training's modules, and the index side
(`tagd.index`: the query commands) never loads the model runtime.

Read with the standard library's `ast`, not by importing: every import counts, also one inside a
function (a cycle hidden in a function is still a cycle a reader has to untangle), except those
under `if TYPE_CHECKING:`, which never run. `from package import name` depends on the submodule
`package.name` when there is one, else on the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("tagd", "training")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for statement in block.body for node in ast.walk(statement)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {m for m in out if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert len(graph) > 50  # the walk found the code
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_index_side_never_imports_the_model_runtime() -> None:
    """The index never loads onnxruntime, PIL or the tagger; the query commands
    (tagd.cli.queries) not at start-up: only `similar` on a photo the index lacks loads the
    tagger, inside that function."""
    known = modules()
    runtime = {"tagd.model", "tagd.tagger", "tagd.detector", "tagd.decode", "tagd.pipeline"}
    queries = ast.parse(known["tagd.cli.queries"].read_text(encoding="utf-8"))
    at_start = {a.name for node in queries.body if isinstance(node, ast.Import) for a in node.names}
    at_start |= {node.module or "" for node in queries.body if isinstance(node, ast.ImportFrom)}
    assert not {m.split(".")[0] for m in at_start} & {"onnxruntime", "PIL", "torch", "numpy"}
    assert not at_start & runtime
    for name, path in known.items():
        if name == "tagd.index" or name.startswith("tagd.index."):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            third_party = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
            third_party |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                            if isinstance(node, ast.ImportFrom) and not node.level}
            assert not imports(name, path, known) & runtime, name
            assert not third_party & {"onnxruntime", "PIL", "torch"}, name


def test_the_scale_out_extras_are_imported_only_where_they_are_used() -> None:
    """psycopg and ray are extras (tagd[postgres], tagd[ray]): only tagd.index.postgres imports
    psycopg and only tagd.backfill imports ray, both inside functions, so the default install
    runs every command without them."""
    owners = {"psycopg": "tagd.index.postgres", "ray": "tagd.backfill"}
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                used = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                used = {(node.module or "").split(".")[0]}
            else:
                continue
            for extra in used & set(owners):
                assert name == owners[extra], f"{name} imports {extra}"
                assert id(node) not in top, f"{name} imports {extra} at module level"


def test_a_module_over_400_lines_says_why_at_its_top() -> None:
    """Modules fit in a head; the few that do not say why in their docstring ("Over 400 lines: ...")."""
    long = []
    for folder in ("tagd", "training", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") + 1 > 400:
                doc = ast.get_docstring(ast.parse(text)) or ""
                if "Over 400 lines: " not in doc:
                    long.append(f"{path.relative_to(REPO)} ({text.count(chr(10)) + 1} lines)")
    assert long == [], long
