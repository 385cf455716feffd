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


# ------------------------------------------------------------------------------------ issue 16: every spec
# A value off every preset's default for each option (a new option without one here fails the first test).
OFF_DEFAULT = dict(
    task="parity", delays=[6, 8], channels=2, order=2, seq_len=30, batch=8, arch="gru", hidden=12, gain=1.5,
    orthogonal=True, bias=False, relax_steps=50, seeds=[3, 7], steps=40, lr=0.01, clip=0.0, eval_every=25,
    eval_batch=32, success_acc=0.8, log_every=5, monitor_k=4, diag_len=80, diag_transient=10, diagnostics=False,
    diag_dtype="float32", stop_when_solved=False, device="cpu", schedules=["none", "adaptive"], k=6, qr_every=2, floss_len=30,
    floss_transient=5, qr="householder", floss_lr=0.01, floss_batch=2, floss_target=0.1, through_states=False,
    pre_steps=20, inter_steps=10, inter_at=[], every=100, threshold=0.2, adaptive_k=3, adaptive_steps=10,
    weight=0.5, floss_design="reference", name="it's \"quoted\"; rm -rf / $HOME")
CSV_OPTIONS = ("csv", "columns", "missing", "period", "skill_margin", "test_fraction")   # with task csv


def _csv(tmp_path):
    import math

    path = tmp_path / "s.csv"
    path.write_text("year,x,y\n" + "\n".join(f"{1800 + i},{math.sin(i / 3):.4f},{math.cos(i / 5) + i / 50:.4f}"
                                              for i in range(200)) + "\n")
    return str(path)


def _round_trip(spec):
    """The reproduce command parses back (through the CLI's own parser) to exactly ``spec``."""
    from floss_core.cli import COMMANDS, _Parser, spec_from_args

    d = spec_to_dict(spec)
    args = O.command_args(d)
    parser = _Parser(prog="floss_core")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    assert spec_to_dict(spec_from_args(parser.parse_args(["compare", *args]))) == d, args
    return args


def test_every_option_has_a_flag_and_a_test_value():
    # issue 16: the reproduce command left out the options without a flag (eval_every, lr, ...); now each has one
    assert [o.name for o in O._TABLE if not o.flag] == []
    assert set(OFF_DEFAULT) | set(CSV_OPTIONS) == set(O.NAMES)


def test_every_single_option_off_its_default_reproduces(tmp_path):
    from floss_core.demo import SIZES, launch_spec

    made = set()
    csv = dict(task="csv", csv=_csv(tmp_path), columns=["y", "x"], missing="drop", period=12, skill_margin=0.2,
               test_fraction=0.3, delays=[2], seq_len=10)
    for size in SIZES:
        for name, value in [*OFF_DEFAULT.items(), *[(f"csv:{k}", v) for k, v in csv.items()]]:
            options = {name: value} if not name.startswith("csv:") else \
                {**csv, **({"seeds": 2} if size == "paper" else {})}
            try:
                spec = launch_spec(size, **options)
            except ValueError:
                continue   # not a spec this size makes with this value (e.g. hidden 12 below the paper's k 75)
            _round_trip(spec)
            made.add(name)
    assert made >= set(OFF_DEFAULT) | {f"csv:{k}" for k in csv}, set(OFF_DEFAULT) - made


def test_every_size_and_schedule_set_reproduces():
    # the Launch page's sizes x every schedule alone, with the baseline, and all together; the one-click demo
    from floss_core.demo import SIZES, launch_spec, quick_demo_spec

    sets = [[s] for s in O.SCHEDULES] + [["none", s] for s in O.SCHEDULES if s != "none"] + [list(O.SCHEDULES)]
    for size in SIZES:
        for schedules in sets:
            args = _round_trip(launch_spec(size, schedules=schedules))
            assert args[args.index("--schedules") + 1] == ",".join(schedules)
        for task in O.TASKS:
            if task != "csv":
                _round_trip(launch_spec(size, task=task))
    args = _round_trip(launch_spec("tiny", schedules=["none", "pre", "adaptive"]))
    assert args[args.index("--eval-every") + 1] == "10"     # the command that used to exit 2
    _round_trip(quick_demo_spec())


@pytest.mark.parametrize("preset", O.PRESETS)
def test_custom_flossing_designs_and_seed_lists_reproduce(preset):
    for design in O.DESIGNS:
        for through in (True, False):
            _round_trip(make_spec(preset, floss_design=design, through_states=through))
    for seeds, shown in (([5], "5,"), ([3, 7], "3,7"), ([0, 1, 2], "3"), ([2, 1], "2,1"), (4, "4")):
        args = _round_trip(make_spec(preset, seeds=seeds))
        assert args[args.index("--seeds") + 1] == shown


def test_bool_options_are_flag_pairs_and_seeds_take_a_list():
    args = O.command_args(spec_to_dict(make_spec("quick", bias=False, diagnostics=False, orthogonal=True)))
    assert "--no-bias" in args and "--no-diagnostics" in args and "--orthogonal" in args
    assert spec_to_dict(O.parse_command(["--seeds", "3,7"]))["seeds"] == (3, 7)
    assert spec_to_dict(O.parse_command(["--seeds", "3"]))["seeds"] == (0, 1, 2)
    with pytest.raises(ValueError, match="expected comma-separated integers"):
        O.parse_command(["--seeds", "3,x"])
