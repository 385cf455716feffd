"""The README's "Use it in your own code" section runs as written: its python block is extracted and
executed in a fresh interpreter from the repository root."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Use it in your own code"


def section_code(readme: str, heading: str) -> str:
    """The first ```python block between ``heading`` and the next level-2 heading."""
    start = readme.index(heading) + len(heading)
    nxt = re.search(r"^## ", readme[start:], flags=re.M)
    section = readme[start: start + nxt.start()] if nxt else readme[start:]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.M | re.S)
    assert blocks, f"no python block under {heading!r}"
    return blocks[0]


def test_the_extractor_finds_the_right_block():
    text = "# t\n## Other\n```python\nx = 1\n```\n## Use it in your own code\ntext\n```bash\nls\n```\n" \
           "```python\ny = 2\n```\n```python\nz = 3\n```\n## Next\n```python\nw = 4\n```\n"
    assert section_code(text, HEADING) == "y = 2\n"


@pytest.mark.slow
def test_use_it_in_your_own_code_runs_as_written(tmp_path):
    code = section_code((ROOT / "README.md").read_text(encoding="utf-8"), HEADING)
    assert "floss_core.adapters" in code
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "λ before:" in out and "λ after:" in out
    assert out.count("your task") == 2          # the two forecast verdicts


def test_every_module_is_named_in_the_readme_and_architecture():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    arch = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    core = ROOT / "floss_core"
    missing = []
    for f in sorted(core.rglob("*.py")):
        rel = f.relative_to(core)
        if len(rel.parts) == 1:     # a top-level module: named by its path in the README's table
            named_in_readme = f"floss_core/{rel}" in readme
        else:                       # a package's module: the package row lists it by name
            named_in_readme = f"floss_core/{rel.parts[0]}/" in readme and (
                rel.name == "__init__.py" or f"`{rel.stem}`" in readme)
        named_in_arch = rel.name in arch
        if not (named_in_readme and named_in_arch):
            missing.append(str(rel))
    assert missing == []
