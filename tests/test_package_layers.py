"""The package's own imports follow the pipeline: no circle, no import from a lower stage to a higher one.

``STAGES`` is the one definition of the stage order (docs/conventions.md shows it and is checked against it).
Every import counts, also one inside a function. A module may import its own stage and the stages below it;
the readers of prepared data never import the data preparation (they read frame stores).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "python" / "mfuse"

#: The pipeline's stages, lowest first, and the packages / modules of each. The frame-store format and reader
#: sit below prep, which writes what they define; the data flows videos -> prep -> stores -> sampling/layers.
STAGES = (
    ("foundation", ("mfuse", "mfuse.conventions", "mfuse.fileio", "mfuse.processes")),
    ("videos", ("mfuse.datasets", "mfuse.synthetic")),
    ("stores", ("mfuse.stores",)),
    ("prep", ("mfuse.prep",)),
    ("sampling", ("mfuse.sampling",)),
    ("layers", ("mfuse.layers",)),
    ("nets", ("mfuse.nets",)),
    ("training", ("mfuse.training", "mfuse.surgery", "mfuse.pretrain")),
    ("evaluation", ("mfuse.evaluation",)),
    ("reports", ("mfuse.reports",)),
    ("recipe", ("mfuse.recipe",)),
)
#: Stages that read prepared data and therefore never import ``mfuse.prep``.
READERS = ("sampling", "layers", "nets", "training", "evaluation", "reports")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def stage_of(module: str) -> int:
    best = None
    for index, (_, owners) in enumerate(STAGES):
        for owner in owners:
            if module == owner or (owner != "mfuse" and module.startswith(owner + ".")):
                if best is None or len(owner) > best[1]:
                    best = (index, len(owner))
    if best is None:
        raise KeyError(module)
    return best[0]


def imports_of(module: str) -> dict[str, int]:
    """``{imported mfuse module: line}`` of every import in ``module`` (``from p import m`` names module p.m)."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "mfuse" or target.startswith("mfuse."):
                found.setdefault(target, node.lineno)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def test_imports_are_absolute():
    relative = [f"{path}:{node.lineno}" for module, path in MODULES.items()
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative, f"relative imports (use mfuse.<...>): {relative}"


def test_every_module_belongs_to_a_stage_and_imports_existing_modules():
    assert set(GRAPH) == set(MODULES)
    for module in MODULES:
        stage_of(module)
    missing = [(module, target) for module, targets in GRAPH.items() for target in targets if target not in MODULES]
    assert not missing


def test_no_import_runs_from_a_lower_stage_to_a_higher_one():
    names = [name for name, _ in STAGES]
    upward = [f"{MODULES[module].relative_to(ROOT)}:{line} ({names[stage_of(module)]}) imports {target} "
              f"({names[stage_of(target)]})"
              for module, targets in GRAPH.items() for target, line in targets.items()
              if stage_of(target) > stage_of(module)]
    assert not upward, "\n".join(upward)


def test_readers_of_prepared_data_never_import_the_preparation():
    names = [name for name, _ in STAGES]
    offenders = [f"{module} imports {target}" for module, targets in GRAPH.items() for target in targets
                 if names[stage_of(module)] in READERS and names[stage_of(target)] == "prep"]
    assert not offenders, offenders


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import circle of ``graph`` as a list of modules, or None."""
    state: dict[str, int] = {}   # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_circle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_checks_catch_a_circle_and_an_upward_import():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None
    assert stage_of("mfuse.recipe.report") > stage_of("mfuse.evaluation.testing") > stage_of("mfuse.sampling.crops")
    assert stage_of("mfuse.stores.reader") < stage_of("mfuse.prep.lmdb_store") < stage_of("mfuse.layers.video_data")


SUBPACKAGES = sorted(m for m, path in MODULES.items() if path.name == "__init__.py" and m != "mfuse")


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_every_subpackage_re_exports_its_public_api(package):
    module = importlib.import_module(package)
    names = getattr(module, "__all__", None)
    assert names, f"{package}/__init__.py has no __all__"
    assert len(set(names)) == len(names)
    for name in names:
        value = getattr(module, name)   # AttributeError names what is missing
        home = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        assert home is None or home == package or home.startswith(package + "."), f"{package}.{name}: {home}"


def test_every_module_has_its_test_file():
    expected = {module: ROOT / "tests" / f"test_{'_'.join(module.split('.')[1:])}.py" for module in MODULES
                if MODULES[module].name != "__init__.py"}
    missing = sorted(str(path.relative_to(ROOT)) for path in expected.values() if not path.is_file())
    assert not missing, f"modules without a test file: {missing}"


@pytest.fixture(scope="module")
def conventions_doc() -> str:
    return (ROOT / "docs" / "conventions.md").read_text()


def documented_modules(section: str) -> set[str]:
    """The ``pkg/module.py`` paths of the package map: ``  pkg/`` lines and the ``    module.py`` lines under them."""
    listed, package = set(), None
    for line in section.splitlines():
        top = re.match(r"^  (\w+)(/|\.py)\s", line + " ")
        inner = re.match(r"^    (\w+\.py)\s", line + " ")
        if top and top.group(2) == "/":
            package = top.group(1)
        elif top:
            package = None
            listed.add(top.group(1) + ".py")
        elif inner and package:
            listed.add(f"{package}/{inner.group(1)}")
    return listed


def test_the_docs_list_every_module_and_the_stage_order(conventions_doc):
    section = conventions_doc.split("## Package layout", 1)[1].split("\n## ", 1)[0]
    actual = {str(path.relative_to(PACKAGE_DIR)) for path in MODULES.values() if path.name != "__init__.py"}
    listed = documented_modules(section)
    assert listed == actual, (f"docs/conventions.md's package map lacks {sorted(actual - listed)} and lists "
                              f"{sorted(listed - actual)}")
    order = " → ".join(name for name, _ in STAGES)
    assert order in section, f"docs/conventions.md should state the stage order {order!r}"
