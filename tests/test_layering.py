"""The package's layering, read statically from the import statements of src/xlstm_exp.

Nothing here imports the modules under test: every .py file is parsed with `ast` and each import
statement, at module level or inside a function, becomes an edge of the graph.

- `xlstm_exp.models` (plain nn.Modules) imports nothing else of xlstm_exp but the dependency-free
  `xlstm_exp.user_error`, and no Lightning, Hydra or OmegaConf;
- `xlstm_exp.data` does not reach `xlstm_exp.models` (directly or through other xlstm_exp
  modules) and does not reach Hydra or OmegaConf; Lightning is fine there;
- no import cycles among xlstm_exp modules.

`pkg/__init__.py` is the module `pkg`. `from a.b import c` is an edge to `a.b.c` when that is a
module (a submodule imported by name) and to `a.b` otherwise; `import a.b.c` and
`from a.b.c import x` are edges to `a.b.c` only, not to the packages `a` and `a.b` that Python
also runs on the way, or every submodule would form a cycle with its package's `__init__`.
Imports under `if TYPE_CHECKING:` never run, so they are not edges for the cycle check (they still
count for the layering).
"""

import ast
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "xlstm_exp"
MODELS = f"{ROOT}.models"
DATA = f"{ROOT}.data"
USER_ERROR = f"{ROOT}.user_error"  # the error type of user mistakes; imports nothing
LIGHTNING = ("lightning", "pytorch_lightning", "lightning_fabric")
CONFIG_LIBS = ("hydra", "omegaconf")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module, internal or external
    file: str  # path of the importing file, relative to the repository
    line: int
    text: str  # the import statement as written
    type_only: bool  # under `if TYPE_CHECKING:`

    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def type_only_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside the body of an `if TYPE_CHECKING:`."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for statement in node.body:
                found.update(id(inner) for inner in ast.walk(statement))
    return found


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((SRC / ROOT).rglob("*.py"))}


def imports_of(name: str, path: Path) -> list[Import]:
    known = modules()
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    type_only = type_only_nodes(tree)
    file = str(path.relative_to(SRC.parent))
    found: list[Import] = []

    def add(node: ast.stmt, target: str) -> None:
        text = ast.get_source_segment(source, node) or ast.unparse(node)
        text = " ".join(text.split())
        found.append(Import(name, target, file, node.lineno, text, id(node) in type_only))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = {
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            }
            for target in sorted(targets):
                add(node, target)
    return found


@cache
def graph() -> tuple[Import, ...]:
    return tuple(edge for name, path in modules().items() for edge in imports_of(name, path))


def edges_from() -> dict[str, list[Import]]:
    out: dict[str, list[Import]] = {}
    for edge in graph():
        out.setdefault(edge.source, []).append(edge)
    return out


def path_to(start: str, forbidden, edges: dict[str, list[Import]]) -> list[Import] | None:
    """The imports leading from `start` to a module `forbidden` accepts, by breadth-first search."""
    previous: dict[str, Import | None] = {start: None}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        if forbidden(name):
            chain: list[Import] = []
            while (edge := previous[name]) is not None:
                chain.append(edge)
                name = edge.source
            return chain[::-1]
        for edge in edges.get(name, []):
            if edge.target not in previous:
                previous[edge.target] = edge
                queue.append(edge.target)
    return None


def layer_violations(layer: str, forbidden) -> list[str]:
    """Every import of a module in `layer` that is, or leads through xlstm_exp to, a module
    `forbidden` accepts, one message each."""
    edges = edges_from()
    messages = []
    for edge in graph():
        if not is_under(edge.source, layer):
            continue
        if forbidden(edge.target):
            messages.append(f"{edge.where()}  (imports {edge.target})")
        elif is_under(edge.target, ROOT) and not is_under(edge.target, layer):
            chain = path_to(edge.target, forbidden, edges)
            if chain:
                via = " -> ".join([edge.target] + [step.target for step in chain])
                steps = "\n".join(f"      {step.where()}" for step in chain)
                messages.append(f"{edge.where()}  (reaches {via})\n{steps}")
    return messages


def top_level(name: str) -> str:
    return name.partition(".")[0]


def test_graph_finds_known_edges():
    names = modules()
    assert f"{MODELS}.language_model" in names and MODELS in names and DATA in names
    edges = {(edge.source, edge.target) for edge in graph()}
    assert (f"{MODELS}.language_model", f"{MODELS}.blocks") in edges
    # `from xlstm_exp.models import triton`: the subpackage, not the package importing it.
    assert (f"{MODELS}.slstm_mixer", f"{MODELS}.triton") in edges
    # Imports inside functions count too.
    assert (f"{MODELS}.triton.ahead_of_time", f"{MODELS}.triton.mlstm_chunkwise") in edges
    # A package's __init__ is the package; no edge from a submodule up to its package's __init__
    # for `from xlstm_exp.models.blocks import ...`.
    assert (f"{MODELS}.language_model", MODELS) not in edges
    assert (MODELS, f"{MODELS}.language_model") in edges
    # External packages are targets too.
    assert any(source.startswith(DATA) and target == "lightning" for source, target in edges)


def test_models_import_nothing_but_models_and_no_training_stack():
    def forbidden(name: str) -> bool:
        outside = is_under(name, ROOT) and not is_under(name, MODELS) and name != USER_ERROR
        return outside or top_level(name) in LIGHTNING + CONFIG_LIBS

    violations = layer_violations(MODELS, forbidden)
    assert not violations, (
        f"{MODELS} must import only {MODELS}.* and {USER_ERROR} from xlstm_exp, and no "
        "Lightning, Hydra or OmegaConf:\n" + "\n".join(violations)
    )


def test_data_does_not_reach_models_hydra_or_omegaconf():
    def forbidden(name: str) -> bool:
        return is_under(name, MODELS) or top_level(name) in CONFIG_LIBS

    violations = layer_violations(DATA, forbidden)
    assert not violations, (
        f"{DATA} must not import {MODELS}, Hydra or OmegaConf, directly or through other "
        "xlstm_exp modules:\n" + "\n".join(violations)
    )


def strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
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
            components.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles():
    internal = set(modules())
    runtime = [
        edge
        for edge in graph()
        if not edge.type_only and edge.target in internal and edge.source in internal
    ]
    adjacency: dict[str, set[str]] = {}
    first_edge: dict[tuple[str, str], Import] = {}
    for edge in runtime:
        adjacency.setdefault(edge.source, set()).add(edge.target)
        first_edge.setdefault((edge.source, edge.target), edge)

    cycles = []
    for component in strongly_connected(sorted(internal), adjacency):
        start = component[0]
        if len(component) == 1 and start not in adjacency.get(start, ()):
            continue
        members = set(component)
        within = {
            source: [first_edge[source, target] for target in sorted(targets & members)]
            for source, targets in adjacency.items()
            if source in members
        }
        # The shortest way back to `start`: from each of its successors to `start` itself.
        best: list[Import] | None = None
        for edge in within[start]:
            rest = [] if edge.target == start else path_to(edge.target, start.__eq__, within)
            if rest is not None and (best is None or len(rest) + 1 < len(best)):
                best = [edge, *rest]
        assert best is not None
        path = " -> ".join([start] + [edge.target for edge in best])
        steps = "\n".join(f"      {edge.where()}" for edge in best)
        cycles.append(f"{path}\n{steps}")
    assert not cycles, "import cycles among xlstm_exp modules:\n" + "\n".join(cycles)
