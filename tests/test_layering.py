"""Layering: the core never pulls in the UI, and the UI holds no tensor math.

* ``import floss_core`` and every floss_core submodule, in a fresh interpreter, leaves no streamlit in
  sys.modules;
* no file in pages/ or app.py imports torch (checked on the syntax tree, so a commented-out or string
  mention does not count and an ``import torch.nn as nn`` or ``from torch import x`` does).
"""
import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "floss_core"


def core_modules():
    return sorted(f"floss_core.{m.name}" for m in pkgutil.iter_modules([str(CORE)]))


def test_core_submodules_are_found():
    mods = core_modules()
    for expected in ("floss_core.lyapunov", "floss_core.models", "floss_core.train", "floss_core.__main__"):
        assert expected in mods


def test_importing_floss_core_pulls_in_no_streamlit():
    code = (
        "import importlib, json, sys\n"
        "bad = {}\n"
        f"for name in ['floss_core'] + {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "    leaked = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
        "    if leaked:\n"
        "        bad[name] = leaked[:3]\n"
        "        break\n"
        "print(json.dumps(bad))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {}, r.stdout


def torch_imports(source: str) -> list[str]:
    """Names of torch modules a Python source imports (any nesting level)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "torch" or a.name.startswith("torch.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "torch" or node.module.startswith("torch."):
                found.append(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and str(node.args[0].value).split(".")[0] == "torch":
            found.append(node.args[0].value)
    return found


def test_the_checker_sees_every_form_of_import():
    assert torch_imports("import torch") == ["torch"]
    assert torch_imports("import numpy, torch.nn as nn") == ["torch.nn"]
    assert torch_imports("from torch import tensor") == ["torch"]
    assert torch_imports("def f():\n    import torch.linalg\n") == ["torch.linalg"]
    assert torch_imports("import importlib\nimportlib.import_module('torch')") == ["torch"]
    assert torch_imports("# import torch\ns = 'import torch'\nimport torchvision_like_name as t") == []


def test_ui_files_do_not_import_torch():
    files = [f for f in [ROOT / "app.py"] if f.exists()] + sorted((ROOT / "pages").rglob("*.py"))
    offenders = {str(f.relative_to(ROOT)): torch_imports(f.read_text()) for f in files}
    assert {f: names for f, names in offenders.items() if names} == {}


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_store_views_settings_and_the_option_table_load_no_torch():
    # what the CLI's status / cancel and every dashboard page need first must start fast
    loaded = _modules_after("import floss_core.store, floss_core.views, floss_core.settings, floss_core.options, "
                            "floss_core.stats, floss_core.cli, floss_core.tasks, floss_core.runner as r\n"
                            "r.cancel, r.configured_workers, r.stored_records")
    assert "torch" not in loaded and not any(m.startswith("torch.") for m in loaded)
    assert "floss_core.store" in loaded and "floss_core.views" in loaded


def test_the_public_face_is_a_short_lazy_list():
    import floss_core

    assert len(floss_core.__all__) <= 16
    loaded = _modules_after("import floss_core")
    assert "torch" not in loaded
    # and every public name resolves, to the object its module defines
    import importlib
    for name, module in floss_core._FACE.items():
        assert getattr(floss_core, name) is getattr(importlib.import_module(f"floss_core.{module}"), name)


def test_the_dashboards_shared_module_loads_no_torch():
    # every page imports dashboard.py; torch loads only when a page builds a spec, estimates or floss
    loaded = _modules_after("import sys; sys.path.insert(0, '.')\nimport dashboard")
    assert "torch" not in loaded and "floss_core.store" in loaded
