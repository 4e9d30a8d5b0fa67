"""The package layout: one direction of imports (no circle, no module importing one above it), prompt files that
hold modules only, one study per notebook that owns its profiles, notebooks that import their study."""
import ast
import json
from pathlib import Path

import pytest

from vpkit import harness, studies
from vpkit.profiles import PROFILE_NAMES

ROOT = Path(__file__).resolve().parent.parent / "vpkit"

# bottom to top; a module may import modules of its own layer or below (circles are tested separately)
LAYERS = [
    ["vpkit.netguard", "vpkit.dryrun", "vpkit.assets", "vpkit.device", "vpkit.profiles", "vpkit.featcache"],
    ["vpkit.data", "vpkit.data.tasks", "vpkit.data.shift", "vpkit.data.continual", "vpkit.data.emoji",
     "vpkit.data.coop_splits"],
    ["vpkit.backbones", "vpkit.metrics", "vpkit.stats"],
    ["vpkit.vlm"],
    ["vpkit.prompts", "vpkit.prompts.vit", "vpkit.prompts.vpt", "vpkit.prompts.pixel", "vpkit.prompts.protuning",
     "vpkit.prompts.coop", "vpkit.prompts.l2p"],
    ["vpkit.train"],
    ["vpkit.methods", "vpkit.continual", "vpkit.alignment"],
    ["vpkit.report", "vpkit.plots"],
    ["vpkit.studies"] + [f"vpkit.studies.{s}" for s in studies.STUDIES],
    ["vpkit.harness", "vpkit.sweep", "vpkit.compare", "vpkit.__main__", "vpkit"],
]
LAYER = {m: i for i, names in enumerate(LAYERS) for m in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """module -> the vpkit modules it imports, lazily (inside functions) or not."""
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                for a in node.names:  # `from . import x` names a module when x is one
                    sub = f"{mod}.{a.name}"
                    deps.add(sub if (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                             or (ROOT.parent / sub.replace(".", "/")).is_dir() else mod)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("vpkit")}
        graph[name] = deps - {name}
    return graph


def test_every_module_has_a_layer():
    assert set(_imports()) <= set(LAYER), f"add to LAYERS: {sorted(set(_imports()) - set(LAYER))}"


def test_no_module_imports_one_above_it():
    bad = [f"{m} (layer {LAYER[m]}) imports {d} (layer {LAYER[d]})"
           for m, deps in _imports().items() for d in deps if LAYER[d] > LAYER[m]]
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    graph = _imports()
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for d in graph.get(m, ()):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, f"import circles: {cycles}"


def test_the_layout_test_sees_a_circle(tmp_path, monkeypatch):
    """The circle check can fail: a planted pair of modules importing each other is found."""
    pkg = tmp_path / "vpkit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    graph = _imports()
    assert graph["vpkit.a"] == {"vpkit.b"} and graph["vpkit.b"] == {"vpkit.a"}
    with pytest.raises(AssertionError, match="import circles"):
        test_no_import_circle()


def test_prompt_files_hold_modules_only():
    """No prompt file imports the methods table, the loop, a study or the report (they are nn.Modules)."""
    banned = {"vpkit.methods", "vpkit.train", "vpkit.continual", "vpkit.report", "vpkit.plots"}
    for m, deps in _imports().items():
        if m.startswith("vpkit.prompts"):
            assert not deps & banned and not any(d.startswith("vpkit.studies") for d in deps), (m, deps)


@pytest.mark.parametrize("name", studies.STUDIES)
def test_each_study_owns_its_profiles(name):
    mod = studies.study(name)
    assert set(mod.PROFILES) == set(PROFILE_NAMES)
    for p in PROFILE_NAMES:
        cfg = mod.settings(p)
        assert cfg["profile"] == p and cfg == studies.settings(name, p)
    with pytest.raises(ValueError, match="allowed"):
        mod.settings("offline", not_a_parameter=1)
    with pytest.raises(ValueError, match="allowed"):
        mod.settings("fast")


def test_unknown_study_lists_the_known_ones():
    with pytest.raises(ValueError, match="known"):
        studies.study("coop")


@pytest.mark.parametrize("name", list(harness.NOTEBOOKS))
def test_each_notebook_imports_its_study(name):
    nb = json.loads(harness.notebook_path(name).read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert f"from vpkit.studies import {name}" in code, f"{name}'s notebook should import vpkit.studies.{name}"
    assert "profiles.settings(" not in code


def test_smoke_compare_finds_changes_and_ignores_timings(tmp_path):
    """scripts/smoke_compare.py (the before/after proof of a refactor) flags a changed accuracy, not a time."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("smoke_compare", ROOT.parent / "scripts" / "smoke_compare.py")
    sc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sc)
    for side, acc, sec in (("a", 0.5, 1.0), ("b", 0.5, 2.0), ("c", 0.6, 1.0)):
        d = tmp_path / side / "nb"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"headline": {"acc": acc, "train_seconds": sec}, "claims": []}))
        (d / "runs.csv").write_text(f"method,acc,images_per_s\nlinear,{acc},{sec}\n")
    assert sc.diff(tmp_path / "a", tmp_path / "b") == []
    assert len(sc.diff(tmp_path / "a", tmp_path / "c")) == 2
