"""The installable library (issue 17, item 1): ``pip install .`` and ``pip install -e .`` of a copy of
the package into a fresh venv, then the README's "Use it in your own code" block and the ``floss-lab``
console script, run from a folder outside the repository with no PYTHONPATH.

The venv sees the system's site packages (torch, numpy: a fresh torch install is a download, and an
unpinned one resolves to a multi-GB CUDA build), and the package goes in with ``--no-deps``; so the
tests prove that the copy imported is the installed one, never the repository's, and check the declared
requirements in pip's metadata: ranges for torch and numpy only, the rest in extras."""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_readme import HEADING, section_code

ROOT = Path(__file__).resolve().parents[1]
DIST = "gradient-flossing-lab"
pytestmark = pytest.mark.slow


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def _run(cmd, cwd, timeout=300):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _install(tmp: Path, editable: bool) -> tuple[Path, Path, float]:
    """A copy of the package (nothing of the repository's tree is built in or left behind) installed
    into a fresh venv; returns (venv, source copy, seconds the install took)."""
    src = tmp / "src"
    src.mkdir()
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, src / f)
    shutil.copytree(ROOT / "floss_core", src / "floss_core", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=tmp)
    py = _bin(venv, "python")
    cmd = [py, "-m", "pip", "install", "-q", "--no-deps"]
    try:     # the system's setuptools builds it (no download) where it can: the venv's bundled older one goes
        if int(importlib.metadata.version("setuptools").split(".")[0]) >= 70:   # bdist_wheel built in
            _run([py, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], cwd=tmp)
            cmd.append("--no-build-isolation")
    except importlib.metadata.PackageNotFoundError:
        pass
    t0 = time.perf_counter()
    _run([*cmd, *(["-e"] if editable else []), src], cwd=tmp)
    return venv, src, time.perf_counter() - t0


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    venv, src, seconds = _install(tmp_path_factory.mktemp("pkg"), editable=False)
    print(f"pip install . took {seconds:.1f} s")
    shutil.rmtree(src)   # the wheel's copy is all that is left
    return venv


def _where(venv: Path, cwd: Path) -> dict:
    code = ("import json, floss_core, importlib.metadata as m, sys; "
            "print(json.dumps({'file': floss_core.__file__, 'version': floss_core.__version__, "
            f"'meta': m.version({DIST!r}), 'requires': m.requires({DIST!r}), "
            f"'files': [str(f) for f in m.files({DIST!r})], 'prefix': sys.prefix}}))")
    return json.loads(_run([_bin(venv, "python"), "-c", code], cwd=cwd).stdout)


def test_pip_install_puts_the_package_and_its_c_source_in_the_venv(installed, tmp_path):
    w = _where(installed, tmp_path)
    site = Path(w["file"]).resolve().parent
    assert Path(w["prefix"]).resolve() == installed.resolve()
    assert installed.resolve() in site.parents, w["file"]             # the installed copy ...
    assert ROOT not in site.parents                                    # ... never the repository's
    assert (site / "csrc" / "rnn_loop.cpp").is_file()                  # compiled at run time by native.py
    assert "floss_core/csrc/rnn_loop.cpp" in w["files"]
    import floss_core
    assert w["version"] == w["meta"] == floss_core.__version__         # the version is floss_core's own


def test_the_core_requirements_are_ranges_for_the_math_only(installed, tmp_path):
    reqs = _where(installed, tmp_path)["requires"]
    core = [r for r in reqs if "extra ==" not in r]
    names = sorted(r.split(">")[0].split("<")[0].split("=")[0].split(";")[0].strip().lower() for r in core)
    assert names == ["numpy", "torch"], core
    assert all("==" not in r.split(";")[0] for r in reqs), reqs        # ranges, never the app's exact pins
    torch_req = next(r for r in core if r.startswith("torch"))
    assert ">=2" in torch_req and "<3" in torch_req, torch_req
    extras = {r.split("extra ==")[1].strip().strip("'\"") for r in reqs if "extra ==" in r}
    assert {"lab", "dashboard", "dask", "dev"} <= extras, extras
    dashboard = " ".join(r for r in reqs if "'dashboard'" in r or '"dashboard"' in r)
    for name in ("streamlit", "plotly", "playwright"):
        assert name in dashboard, (name, reqs)


def test_the_readme_snippet_and_the_console_script_run_outside_the_repository(installed, tmp_path):
    code = section_code((ROOT / "README.md").read_text(encoding="utf-8"), HEADING)
    code += "\nimport floss_core.adapters as _a\nprint('FLOSS_CORE_FROM', _a.__file__)\n"
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    out = _run([_bin(installed, "python"), script], cwd=tmp_path).stdout
    assert "λ before:" in out and "λ after:" in out, out
    origin = Path(out.split("FLOSS_CORE_FROM", 1)[1].strip()).resolve()
    assert installed.resolve() in origin.parents and ROOT not in origin.parents, origin

    r = _run([_bin(installed, "floss-lab"), "--help"], cwd=tmp_path, timeout=60)
    for command in ("spectrum", "floss", "compare", "status", "report", "forecast"):
        assert command in r.stdout, r.stdout


def test_an_editable_install_imports_the_source_folder(tmp_path):
    venv, src, seconds = _install(tmp_path, editable=True)
    print(f"pip install -e . took {seconds:.1f} s")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    w = _where(venv, outside)
    assert Path(w["file"]).resolve() == (src / "floss_core" / "__init__.py").resolve(), w["file"]
    r = _run([_bin(venv, "floss-lab"), "--help"], cwd=outside, timeout=60)
    assert "forecast" in r.stdout
