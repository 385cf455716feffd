"""bench/reproduce_paper.py as a user runs it, at a tiny size: it writes one JSON line per run, prints the
summary table, resumes without redoing finished runs, and --summary-of reprints the table from the file."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # end to end through real processes (pytest.ini)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "reproduce_paper.py"


def _run(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_reproduce_paper_writes_resumes_and_summarises(tmp_path):
    out = tmp_path / "paper.jsonl"
    first = _run("--delays", "20", "--seeds", "2", "--schedules", "none", "--steps", "3", "--out", str(out))
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["schedule"], r["seed"]) for r in recs] == [("none", 0), ("none", 1)]
    assert all(r["config"]["task"]["delay"] == 20 and r["config"]["train"]["steps"] == 3 for r in recs)
    assert all("jacobian" not in r for r in recs)          # kept small
    assert "d=20 none: " in first and "0/2 solved" in first     # progress per finished ensemble
    table = [line for line in first.splitlines() if line.startswith("| 20 | none")]
    assert len(table) == 1 and table[0].startswith("| 20 | none | 0 | 2 | ")   # 3 steps solve nothing
    again = _run("--delays", "20", "--seeds", "2", "--schedules", "none", "--steps", "3", "--out", str(out))
    assert len(out.read_text().splitlines()) == 2          # resumed: nothing redone, nothing appended
    assert [line for line in again.splitlines() if line.startswith("| 20 | none")] == table
    summary = _run("--summary-of", str(out))
    assert [line for line in summary.splitlines() if line.startswith("| 20 | none")] == table
