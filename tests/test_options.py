"""The option table (floss_core/options.py): one row per comparison option, and everything generated
from it agrees with the configs and registries it stands for."""
import dataclasses
import subprocess
import sys

import pytest

from floss_core import options as O
from floss_core.experiment import PRESETS, make_spec, spec_to_dict


def test_choices_are_the_registries_names():
    from floss_core import models, schedules, tasks, train

    assert O.PRESETS == tuple(PRESETS)
    assert O.ARCHS == tuple(models.ARCHS)
    assert O.TASKS == tuple(tasks.TASKS)
    assert O.SCHEDULES == schedules.NAMES
    assert O.DESIGNS == tuple(train.FLOSS_DESIGNS)
    assert O.QR_CHOICES == train.QR_CHOICES
    assert O.DIAG_DTYPES == tuple(train.DIAG_DTYPES)


def test_every_field_is_a_field_of_its_config():
    spec = make_spec("quick")
    parts = {"task": spec.task, "model": spec.model, "train": spec.train, "floss": spec.floss,
             "schedule": spec.schedules[0]}
    for name, (section, fld) in O.FIELDS.items():
        assert fld in {f.name for f in dataclasses.fields(parts[section])}, name


def test_flags_and_page_keys_are_unique():
    flags = [o.flag for o in O.CLI]
    keys = [o.key or o.name for o in O.PAGE]
    assert len(set(flags)) == len(flags) and len(set(keys)) == len(keys)


@pytest.mark.parametrize("preset", O.PRESETS)
def test_read_gives_back_what_make_spec_was_given(preset):
    given = dict(task="parity", order=2, arch="gru", hidden=12, gain=1.5, seeds=3, delays=[4, 8], steps=40,
                 schedules=["none", "adaptive"], k=6, pre_steps=7, inter_at=[10, 30], threshold=0.2,
                 adaptive_k=3, weight=0.5, floss_design="reference", device="cpu", name="x")
    spec = spec_to_dict(make_spec(preset, **given))
    assert {name: O.read(name, spec) for name in given} == given


def test_the_command_line_rebuilds_a_spec_from_its_own_arguments():
    spec = spec_to_dict(make_spec("quick", hidden=9, k=5, floss_len=30, qr="householder", diag_dtype="float32",
                                  floss_design="reference", seeds=2))
    assert spec_to_dict(O.parse_command(O.command_args(spec))) == spec


def test_a_bad_value_is_refused_with_one_line():
    with pytest.raises(ValueError, match="expected an integer"):
        O.parse_command(["--hidden", "many"])
    with pytest.raises(ValueError, match="invalid choice"):
        O.parse_command(["--arch", "transformer"])


def test_the_table_loads_no_torch():
    code = "import sys, floss_core.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_the_report_formats_are_the_reports():
    from floss_core.report.formats import FORMATS

    assert O.REPORT_FORMATS == FORMATS


@pytest.mark.parametrize("options, message", [
    (dict(arch="transformer"), "unknown arch 'transformer'; choose one of rnn, gru, lstm"),
    (dict(task="sort"), "unknown task 'sort'; choose one of copy, xor, parity, csv"),
    (dict(schedules="none,sometimes"), "unknown schedule 'sometimes'; choose one of " + ", ".join(O.SCHEDULES)),
    (dict(schedules=["pre", "never"]), "unknown schedule 'never'; choose one of " + ", ".join(O.SCHEDULES)),
    (dict(floss_design="magic"), "unknown flossing design 'magic'; choose one of lab, reference"),
    (dict(device="tpu"), "unknown device 'tpu'; choose one of auto, cpu, cuda"),
    (dict(qr="givens"), "unknown qr 'givens'; choose one of auto, householder, cholesky"),
])
def test_make_spec_refuses_a_choice_with_the_tables_message(options, message):
    with pytest.raises(ValueError) as e:
        make_spec("quick", **options)
    assert str(e.value) == message


def test_the_csv_series_options_reach_the_spec_and_rebuild_it(tmp_path):
    import math

    csv = tmp_path / "s.csv"
    csv.write_text("year,x,y\n" + "\n".join(f"{1800 + i},{math.sin(i / 3):.4f},{math.cos(i / 5) + i / 50:.4f}"
                                             for i in range(200)) + "\n")
    spec = spec_to_dict(make_spec("quick", task="csv", csv=str(csv), columns="y, x", missing="drop", period=12,
                                  skill_margin=0.2, delays=[2], seq_len=10, seeds=2))
    assert (spec["task"]["columns"], spec["task"]["missing"], spec["task"]["period"],
            spec["task"]["skill_margin"]) == (("y", "x"), "drop", 12, 0.2)
    assert O.read("columns", spec) == ["y", "x"]
    args = O.command_args(spec)
    for flag, value in (("--columns", "y,x"), ("--missing", "drop"), ("--period", "12"), ("--skill-margin", "0.2")):
        assert args[args.index(flag) + 1] == value
    assert spec_to_dict(O.parse_command(args)) == spec
    assert spec_to_dict(make_spec("quick", task="csv", csv=str(csv), columns=["y", "x"], missing="drop", period=12,
                                  skill_margin=0.2, delays=[2], seq_len=10, seeds=2)) == spec   # a list: the same
    # the Launch page's series section (after the upload); the columns get their own widget there
    assert [o.name for o in O.on_page("series")] == ["missing", "period", "skill_margin"]
    assert O.OPTIONS["missing"].choices == ("refuse", "interpolate", "drop")
    assert "r2_threshold" not in O.OPTIONS       # issue 15: success is judged by skill_margin, not R²
