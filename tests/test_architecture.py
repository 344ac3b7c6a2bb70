"""The package's shape, as docs/ARCHITECTURE.md states it: small modules, no import cycle (lazy imports
inside functions included), layers that only import downwards, and no code outside the detector registry
and the detectors' own modules that switches on a detector's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "iadbe"
MAX_LINES = 400
#: where a detector's name may be compared: its registry entry and the detectors' own modules
DETECTOR_MODULES = {"iadbe.models.registry", "iadbe.models.padim", "iadbe.models.patchcore", "iadbe.models.dfkde",
                    "iadbe.models.draem", "iadbe.models.graphs"}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def imports_of(module: str, path: Path) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its file (module level, inside functions,
    under ``if TYPE_CHECKING``): ``from a.b import c`` is an edge to ``a.b.c`` where that is a module, else
    to ``a.b``. Parent packages run first on any import and are not counted as edges."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if path.name == "__init__.py" else 0)
                source = ".".join(base[:keep] + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if target in MODULES:
                    found.add(target)
                elif source in MODULES:
                    found.add(source)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module: imports_of(module, path) for module, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from iadbe.export import export_openvino\n    import iadbe.graph\n")
    assert imports_of("iadbe.somewhere", lazy) == {"iadbe.export", "iadbe.graph"}


def test_no_import_cycle_anywhere_in_the_package() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(("lower", "upper"), [
    ("iadbe.data", "iadbe.inference"),  # data in comes before loading and predicting
    ("iadbe.data", "iadbe.training"),
    ("iadbe.models", "iadbe.training"),
    ("iadbe.models", "iadbe.inference"),
    ("iadbe.inference", "iadbe.training"),
])
def test_a_stage_does_not_import_a_later_one(lower: str, upper: str) -> None:
    offending = {module: sorted(t for t in targets if t == upper or t.startswith(upper + "."))
                 for module, targets in import_graph().items() if module == lower or module.startswith(lower + ".")}
    assert {module: targets for module, targets in offending.items() if targets} == {}


def test_the_library_never_imports_the_app_or_the_cli() -> None:
    front = ("iadbe.app", "iadbe.cli", "iadbe.__main__")
    library = {m: t for m, t in import_graph().items() if not m.startswith(front)}
    assert {m: sorted(x for x in t if x.startswith(front)) for m, t in library.items()
            if any(x.startswith(front) for x in t)} == {}


def test_no_module_is_over_400_lines() -> None:
    long = {module: n for module, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def _detector_names() -> set[str]:
    from iadbe.models import all_specs
    from iadbe.models.registry import _ALIASES

    return {spec.name for spec in all_specs()} | set(_ALIASES) | {spec.anomalib_class for spec in all_specs()} - {""}


def name_switches(path: Path, names: set[str]) -> list[str]:
    """Comparisons (``==``, ``!=``, ``in``, ``match``) of anything with a detector's name, or a lookup of
    a torch model's class name (``type(model).__name__``), in ``path``."""
    found = []

    def literal_names(node: ast.AST) -> set[str]:
        values = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)} & names

    def class_name(node: ast.AST) -> bool:  # type(x).__name__
        return (isinstance(node, ast.Attribute) and node.attr == "__name__" and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id == "type")

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if literal_names(side):
                    found.append(f"{path.name}:{node.lineno} compares with {sorted(literal_names(side))}")
                if class_name(side):
                    found.append(f"{path.name}:{node.lineno} compares a class name")
        elif isinstance(node, ast.match_case) and isinstance(node.pattern, ast.MatchValue):
            if literal_names(node.pattern.value):
                found.append(f"{path.name}:{node.pattern.lineno} matches {sorted(literal_names(node.pattern.value))}")
        elif isinstance(node, ast.Subscript) and class_name(node.slice):
            found.append(f"{path.name}:{node.lineno} looks a class name up")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and class_name(node.args[0]):
            found.append(f"{path.name}:{node.lineno} looks a class name up")
    return found


def test_the_name_switch_finder_finds_switches(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('if spec.name == "padim":\n    pass\nok = model in ("patchcore", "x")\n'
                      'forward = TABLE[type(model).__name__]\nmatch name:\n    case "draem":\n        pass\n'
                      'fine = score_type != "fre_like"\n')
    assert len(name_switches(sample, {"padim", "patchcore", "draem"})) == 4


def test_no_code_outside_the_registry_and_the_detectors_switches_on_a_detector_name() -> None:
    names = _detector_names()
    found = [hit for module, path in MODULES.items() if module not in DETECTOR_MODULES
             and not module.startswith("iadbe.models.generalized") for hit in name_switches(path, names)]
    assert found == []


def test_the_dataset_kinds_and_backends_offered_are_the_ones_the_library_reads() -> None:
    from iadbe import constants
    from iadbe.cli import build_parser
    from iadbe.data.kinds import KINDS
    from iadbe.data.layouts import KIND_LAYOUTS
    from iadbe.inference.loading import BACKENDS

    assert tuple(KIND_LAYOUTS) == KINDS
    assert BACKENDS == constants.BACKENDS
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    for command in ("train", "test", "benchmark", "zoo"):
        dataset = next(a for a in commands[command]._actions if a.dest == "dataset")  # noqa: SLF001
        assert tuple(dataset.choices) == KINDS, command
    for command in ("test", "predict"):
        backend = next(a for a in commands[command]._actions if a.dest == "backend")  # noqa: SLF001
        assert tuple(backend.choices) == constants.BACKENDS, command
    precision = next(a for a in commands["predict"]._actions if a.dest == "precision")  # noqa: SLF001
    from iadbe.inference.backends import PRECISIONS

    assert tuple(precision.choices) == PRECISIONS == constants.PRECISIONS


def test_environment_variables_are_read_in_constants_only() -> None:
    """``os.environ`` / ``os.getenv`` appear in ``constants.py`` only (``child_process_env`` copies the whole
    environment, unread, for the benchmark's and YOLO's child processes)."""
    # process_state puts back what a library's import changed in os.environ (ultralytics); it reads no setting
    allowed = {"iadbe.constants", "iadbe.models.process_state"}
    found = [f"{module}:{node.lineno}" for module, path in MODULES.items() if module not in allowed
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}
             and isinstance(node.value, ast.Name) and node.value.id == "os"]
    assert found == []
