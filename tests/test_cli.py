"""Tests for the command line (python -m floss_core ...), run as a user runs it: a subprocess from the repo
root, one CPU thread. JSON output fields, and bad input -> exit code 2 with exactly one line on stderr.

Each subprocess pays for importing torch, so the extra cases call the same ``main(argv)`` in-process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from floss_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "floss_core", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_spectrum_json():
    r = cli("spectrum", "--hidden", "6", "--gain", "2", "--steps", "60", "--transient", "10", "--seed", "3",
            "--json", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("exponents", "sum", "arch", "hidden", "gain", "seconds", "k", "steps", "transient", "qr_every"):
        assert key in out
    assert len(out["exponents"]) == 6 == out["k"]              # k defaults to the state dimension
    assert out["exponents"] == sorted(out["exponents"], reverse=True)
    assert out["sum"] == pytest.approx(sum(out["exponents"]), abs=1e-5)
    assert out["arch"] == "rnn" and out["hidden"] == 6 and out["gain"] == 2.0 and out["seconds"] >= 0


def in_process(capsys, *args):
    """(exit code, stdout, stderr) of main(args) in this process."""
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_spectrum_lstm_k_and_table(capsys):
    code, out, err = in_process(capsys, "spectrum", "--arch", "lstm", "--hidden", "3", "--k", "4", "--steps", "30",
                                "--transient", "5", "--input", "bits", "--qr-every", "2", "--json")
    assert code == 0, err
    out = json.loads(out)
    assert len(out["exponents"]) == 4 and out["qr_every"] == 2 and out["input"] == "bits"
    code, out, err = in_process(capsys, "spectrum", "--hidden", "4", "--steps", "20", "--transient", "5")
    assert code == 0 and "sum =" in out


def test_floss_json():
    r = cli("floss", "--hidden", "6", "--gain", "2", "--k", "2", "--floss-steps", "3", "--floss-len", "12",
            "--transient", "3", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("before", "after", "seconds", "k", "floss_steps", "hidden", "gain", "arch"):
        assert key in out
    assert len(out["before"]) == 2 and len(out["after"]) == 2 and out["before"] != out["after"]


def test_compare_json_tiny():
    r = cli("compare", "--seeds", "2", "--delay", "4", "--steps", "4", "--seq-len", "10", "--hidden", "6",
            "--k", "2", "--pre-steps", "2", "--schedules", "none,pre", "--json", "--device", "cpu", timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["seeds"] == [0, 1] and out["preset"] == "quick"
    assert set(out["schedules"]) == {"none", "pre"}
    for row in out["schedules"].values():
        for key in ("success_rate", "success_lo", "success_hi", "median_convergence", "iqr_convergence",
                    "final_acc", "lambda1_before", "lambda1_after", "log10_kappa_before", "log10_kappa_after",
                    "wall_seconds", "floss_share", "n", "successes"):
            assert key in row
        assert row["n"] == 2 and 0 <= row["success_rate"] <= 1
    assert out["schedules"]["none"]["floss_share"] == 0 and out["schedules"]["pre"]["floss_share"] > 0


BAD = [  # (args, a word the one-line message must hold)
    (("spectrum", "--arch", "transformer"), "transformer"),
    (("spectrum", "--hidden", "4", "--k", "9"), "k must be in 1..4"),
    (("compare", "--delay", "0"), "delay"),
    (("compare", "--schedules", "none,sometimes"), "sometimes"),
    (("spectrum", "--hidden", "four"), "four"),
]
MORE_BAD = [
    (("spectrum", "--gain", "nan"), "finite"),
    (("spectrum", "--hidden", "4", "--steps", "10", "--transient", "10"), "transient"),
    (("spectrum", "--hidden", "0"), "hidden"),
    (("floss", "--hidden", "4", "--k", "5"), "k must be in 1..4"),
    (("floss", "--floss-steps", "-1"), "floss-steps"),
    (("compare", "--delay", "ten"), "ten"),
    (("compare", "--delay", "7"), "delay"),
    (("compare", "--k", "100"), "k must be in 1..32"),
    (("compare", "--steps", "2.5"), "2.5"),
    (("compare", "--seeds", "0"), "seeds"),
    (("compare", "--arch", "rnnn"), "rnnn"),
    (("compare", "--task", "csv", "--csv", "/nonexistent.csv"), "not found"),
    (("launch",), "launch"),
    ((), "command"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_exits_2_with_one_line(args, needle):
    r = cli(*args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0], lines[0]
    assert r.stdout == ""


@pytest.mark.parametrize("args,needle", MORE_BAD)
def test_more_bad_input_in_process(capsys, args, needle):
    code, out, err = in_process(capsys, *args)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0], lines[0]
    assert out == ""


def test_worker_count_default_and_bad_environment(capsys, monkeypatch):
    from floss_core import runner
    monkeypatch.setattr(runner.os, "sched_getaffinity", lambda _pid: set(range(32)), raising=False)
    assert runner.default_workers() == 8                      # one per core, capped
    monkeypatch.setattr(runner.os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    assert runner.default_workers() == 1
    monkeypatch.setenv("FLOSS_WORKERS", "many")
    code, out, err = in_process(capsys, "compare", "--preset", "quick", "--steps", "5")
    assert code == 2 and err.strip().count("\n") == 0 and "FLOSS_WORKERS must be an integer >= 1 or auto" in err


def test_flossing_window_flags_reach_the_spec(capsys):
    # wired through: a transient outside the window is refused by the spec's own check, one line, exit 2
    code, out, err = in_process(capsys, "compare", "--preset", "quick", "--floss-len", "12", "--floss-transient", "12")
    assert code == 2 and "floss transient must be in 0..11" in err and err.strip().count("\n") == 0
    import argparse

    from floss_core.cli import _add_comparison_args, spec_from_args
    parser = argparse.ArgumentParser()
    _add_comparison_args(parser)
    a = parser.parse_args(["--preset", "quick", "--floss-len", "12", "--floss-transient", "3", "--qr", "householder"])
    f = spec_from_args(a).floss
    assert (f.seq_len, f.transient, f.qr) == (12, 3, "householder")


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (which are not JSON)."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(text, parse_constant=refuse)


def test_an_overflowing_spectrum_is_refused_with_one_line(capsys):
    code, out, err = in_process(capsys, "spectrum", "--gain", "1e308", "--hidden", "4", "--steps", "30",
                                "--transient", "5", "--json")
    assert code == 2 and out == "" and err.strip().count("\n") == 0 and "not finite" in err


def test_a_too_long_qr_interval_is_refused_and_float64_is_the_default(capsys):
    code, out, err = in_process(capsys, "spectrum", "--hidden", "40", "--gain", "2", "--steps", "300", "--transient",
                                "50", "--qr-every", "25", "--dtype", "float32", "--json")
    assert code == 2 and "qr_every=25 is too long" in err and err.strip().count("\n") == 0
    code, out, err = in_process(capsys, "spectrum", "--hidden", "5", "--gain", "2", "--steps", "60", "--transient",
                                "10", "--json")
    assert code == 0 and strict_json(out)["dtype"] == "float64"


def test_floss_save_writes_a_plain_state_dict_and_json_names_it(capsys, tmp_path):
    path = tmp_path / "flossed.pt"
    code, out, err = in_process(capsys, "floss", "--hidden", "6", "--gain", "2", "--k", "2", "--floss-steps", "4",
                                "--floss-len", "12", "--transient", "3", "--save", str(path), "--json")
    assert code == 0, err
    out = strict_json(out)
    assert out["saved"] == str(path.resolve()) and out["steps_taken"] == 4 and out["design"] == "lab"
    state = torch.load(path, weights_only=True)
    assert set(state) == {"J", "W_in", "b", "w_out", "c", "h0"}
    assert state["J"].shape == (6, 6) and state["W_in"].shape == (6, 1) and state["b"].shape == (6,)
    # the saved weights are the flossed ones: a fresh network of that seed has other recurrent weights
    from floss_core import models as M
    fresh = M.init_network(M.ModelConfig(hidden=6, gain=2.0), 1, 1, 0)
    assert not torch.equal(state["J"], fresh["J"]) and torch.equal(state["w_out"], fresh["w_out"])
    for bad, message in ((tmp_path, "is a folder"), (tmp_path / "missing" / "f.pt", "does not exist")):
        code, out, err = in_process(capsys, "floss", "--hidden", "4", "--k", "2", "--floss-steps", "1", "--save", str(bad))
        assert code == 2 and message in err and err.strip().count("\n") == 0


def test_floss_reference_design_and_field_overrides(capsys):
    code, out, err = in_process(capsys, "floss", "--hidden", "6", "--k", "2", "--floss-steps", "3", "--floss-len",
                                "12", "--transient", "3", "--design", "reference", "--json")
    assert code == 0, err
    f = strict_json(out)["floss"]
    assert f["through_states"] is True and f["state_grad"] is None and f["clip"] == 0 and f["stop_tol"] == 0
    code, out, err = in_process(capsys, "floss", "--hidden", "6", "--k", "2", "--floss-steps", "3", "--floss-len",
                                "12", "--transient", "3", "--state-grad", "one_step", "--json")
    assert code == 0 and strict_json(out)["floss"]["state_grad"] == "one_step"


def test_compare_floss_design_reaches_the_spec():
    from floss_core.cli import _Parser, _add_comparison_args, spec_from_args
    parser = _Parser()
    _add_comparison_args(parser)
    spec = spec_from_args(parser.parse_args(["--preset", "paper", "--floss-design", "reference"]))
    from floss_core.train import REFERENCE_FLOSS, LAB_FLOSS
    assert spec.floss == REFERENCE_FLOSS
    assert spec_from_args(parser.parse_args(["--preset", "paper"])).floss == LAB_FLOSS
    assert spec_from_args(parser.parse_args(["--preset", "paper"])).train.diag_dtype == "float64"
    assert spec_from_args(parser.parse_args(["--diag-dtype", "float32"])).train.diag_dtype == "float32"


def test_the_cli_spells_the_design_and_state_gradient_registries_as_they_are():
    from floss_core import cli as cli_module
    from floss_core.train import FLOSS_DESIGNS, STATE_GRADIENTS
    assert tuple(FLOSS_DESIGNS) == cli_module.DESIGN_CHOICES
    assert STATE_GRADIENTS == cli_module.STATE_GRAD_CHOICES


# ------------------------------------------------------------------------------ a CSV series (issue 15)
def _series_csv(tmp_path, gaps=()):
    """A series with a date index, x a cycle of 12 rows on a slight trend, y a trend and a cycle of 6π rows;
    blank cells of x at ``gaps``."""
    import math

    rows = [f"2000-{1 + i // 28:02d}-{1 + i % 28:02d},"
            f"{'' if i in gaps else f'{math.sin(2 * math.pi * i / 12) + 0.001 * i:.5f}'},"
            f"{0.01 * i + math.cos(i / 3):.5f}" for i in range(160)]
    path = tmp_path / "series.csv"
    path.write_text("date,x,y\n" + "\n".join(rows) + "\n")
    return str(path)


CSV_BAD = [  # (extra arguments, a word the one-line message must hold): exit 2, one line, nothing run
    ((), "CSV column 'x' has 2 missing values (blank or NA) at data rows 11, 51; to use it, choose missing"),
    (("--columns", "x,z"), "CSV has no column 'z'; its numeric columns: x, y"),
    (("--columns", "date"), "CSV column 'date' holds dates/times: it is the file's index"),
    (("--missing", "zero"), "invalid choice: 'zero'"),
    (("--period", "1", "--missing", "drop"), "period must be a whole number of rows >= 2"),
    (("--skill-margin", "1.5", "--missing", "drop"), "skill_margin must be a number below 1"),
]


@pytest.mark.parametrize("extra,needle", CSV_BAD)
def test_csv_refusals_exit_2_with_one_line(capsys, tmp_path, extra, needle):
    code, out, err = in_process(capsys, "compare", "--task", "csv", "--csv", _series_csv(tmp_path, gaps=(10, 50)),
                                "--delay", "2", "--seq-len", "10", *extra)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert out == ""


def test_compare_json_has_the_skill_and_baselines_per_schedule_and_the_report_shows_them(capsys, tmp_path):
    store = tmp_path / "floss.db"
    code, out, err = in_process(
        capsys, "compare", "--task", "csv", "--csv", _series_csv(tmp_path, gaps=(10,)), "--missing", "interpolate",
        "--columns", "x", "--period", "12", "--skill-margin", "0.05", "--delay", "2", "--seq-len", "10",
        "--seeds", "2", "--steps", "4", "--hidden", "6", "--k", "2", "--pre-steps", "2", "--schedules", "none,pre",
        "--json", "--device", "cpu", "--store", str(store))
    assert code == 0, err
    rows, eid = json.loads(out)["schedules"], json.loads(out)["experiment_id"]
    for row in rows.values():
        for key in ("skill", "skill_margin", "test_mse", "test_r2", "persistence_mse", "persistence_r2",
                    "seasonal_mse", "seasonal_r2", "baseline", "baseline_mse", "baseline_r2"):
            assert key in row, key
        assert row["skill_margin"] == 0.05
        # a 12-row cycle: one period back is nearly exact, so seasonal persistence is the better baseline
        assert row["baseline"] == "seasonal" and row["seasonal_mse"] < 1e-3 < row["persistence_mse"]
        assert row["baseline_mse"] == row["seasonal_mse"]
    assert rows["none"]["persistence_mse"] == rows["pre"]["persistence_mse"]       # the same test windows
    from floss_core.store import Store

    with Store(store) as s:
        finals = s.runs(eid)
    assert set(finals["missing_filled"]) == {1.0} and set(finals["forecast_columns"]) == {"x"}
    code, out, err = in_process(capsys, "report", str(eid), "--store", str(store), "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert "Against naive forecasts" in html and "seasonal persistence (period 12: 12 steps back)" in html
    assert html.count("data-kind='network'") == 2 and html.count("data-kind='baseline'") == 2
    assert "success at final test skill" in html


def test_a_store_command_on_the_library_only_install_names_the_extra(tmp_path):
    # pip install . (torch and numpy only) has no pandas: the store's commands say which extra brings it
    import subprocess
    import sys

    code = ("import sys; sys.modules['pandas'] = None\n"   # as if pandas were not installed
            "from floss_core.cli import main\n"
            f"main(['status', '--store', {str(tmp_path / 'x.db')!r}])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("floss_core status: needs pandas, which the library-only install leaves out; "
                                "pip install 'gradient-flossing-lab[lab]' (or pip install -r requirements.txt)")
