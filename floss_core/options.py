"""Each comparison option once: its ``make_spec`` keyword, the spec field it sets, its command-line flag,
its help, its choices, its Launch-page widget — and from this one table, everything that used to retype it:

* ``experiment.make_spec``'s flat keyword overrides (``FIELDS``, ``NAMES``),
* the command line's comparison arguments (``add_arguments``, ``spec_from_args``; ``floss_core.cli`` and
  the report's parse-back check use the same functions): every option has a flag (a bool option a pair,
  ``--bias`` / ``--no-bias``; ``--seeds`` a count or the seeds themselves),
* the report's reproduce command (``command_options`` / ``command_args``: the flags that rebuild a stored
  spec; every spec ``make_spec`` makes parses back to itself, tests/test_options.py enumerates them),
* the Launch page's defaults, labels, choices and widget keys (``page_defaults``, ``OPTIONS[name]``).

The defaults per preset are the preset's own configs (``experiment.PRESETS``), read through the same
table (``read``), so a default is written once. Validation stays with the configs (``validate_model``,
``validate_task`` ... also guard a library user who calls ``train`` directly); ``make_spec`` runs it.
This module is pure data plus argparse: it loads no torch, so the CLI's ``status`` and ``cancel`` start fast.
The choices are the registries' names: tasks and schedules read from their (torch-free) registries, the
others (``models.ARCHS``, ``train.FLOSS_DESIGNS`` ...) spelled out here and kept equal by tests/test_options.py.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable

from .schedules import NAMES as SCHEDULES   # the registries that load no torch are read directly
from .tasks import MISSING_MODES
from .tasks import NAMES as TASKS

# the names of registries that live beside torch code, spelled out (tests/test_options.py: equal)
PRESETS = ("paper", "quick")
ARCHS = ("rnn", "gru", "lstm")
DEVICES = ("auto", "cpu", "cuda")
QR_CHOICES = ("auto", "householder", "cholesky")
DESIGNS = ("lab", "reference")
DIAG_DTYPES = ("float64", "float32")
REPORT_FORMATS = ("html", "pdf", "zip")   # report.formats.FORMATS: the report command's --format


@dataclass(frozen=True)
class Option:
    name: str                      # the make_spec keyword (and the CLI's dest)
    field: str | None              # "section.field" it sets in every part of the spec (None: set by make_spec)
    kind: str                      # int | float | str | bool | ints (comma-separated) | names (comma-separated)
    flag: str | None = None        # the command-line flag (None: library and dashboard only)
    help: str | None = None        # the command line's help
    choices: tuple | None = None
    label: str | None = None       # the Launch page's label
    page: str | None = None        # the Launch page's section: task | network | flossing | details | series
    #                                (None: not there)
    key: str | None = None         # the Launch page's widget key after "<size>:" (default: name)
    low: float | None = None       # the Launch page's minimum
    page_help: str | None = None
    what: str | None = None        # the word for one value in messages ("unknown <what> 'x'"; default: name)
    cli: str | None = None         # the command line's kind where it differs from ``kind`` (seeds: a count or a list)


_TABLE = (
    # the task
    Option("task", "task.name", "str", "--task", choices=TASKS, label="Task",
           page_help="csv: forecast your own series d steps ahead", page="task"),
    Option("delays", None, "ints", "--delay", "one delay or a comma-separated sweep",
           label="Delays d (comma-separated)", page="task"),
    Option("channels", "task.channels", "int", "--channels", label="Channels (more than 1: multi-channel task)",
           low=1, page="task"),
    Option("order", "task.order", "int", "--order", "parity over 2**order bits", label="Parity order (2^order bits)",
           low=1, page="task"),
    Option("csv", "task.csv_path", "str", "--csv", "CSV file of the user's series (task csv)"),
    Option("columns", "task.columns", "names", "--columns",
           "csv: the columns to forecast, comma-separated (default: every column but a first date/time or "
           "increasing-integer index column)", label="Columns to forecast", what="column"),
    Option("missing", "task.missing", "str", "--missing",
           "csv: what a gap (blank cell, blank line, NA) does: refuse the file (default), interpolate "
           "(linear between its neighbours; gaps at either end dropped) or drop its rows", choices=MISSING_MODES,
           label="Missing values (gaps)", page="series",
           page_help="refuse: a file with gaps is refused, naming the rows; interpolate: filled linearly between "
                     "neighbours (gaps at either end dropped); drop: their rows removed (the series closes up)"),
    Option("period", "task.period", "int", "--period",
           "csv: the season's length in rows (e.g. 52 for weekly data with a yearly cycle): adds the seasonal "
           "persistence baseline", label="Season length P in rows (optional)", low=2, page="series",
           page_help="adds the seasonal persistence baseline: the value P steps before the target "
                     "(P·⌈d/P⌉ steps when P < d)"),
    Option("skill_margin", "task.skill_margin", "float", "--skill-margin",
           "csv: a run succeeds when its final test skill, 1 - MSE / MSE of the better baseline, reaches this",
           label="Success: skill over the better baseline at least", key="margin", page="series",
           page_help="skill = 1 − MSE / MSE of the better of persistence and seasonal persistence on the same "
                     "test windows: 0 is as good as the baseline, 1 perfect; judged at the final evaluation"),
    Option("test_fraction", "task.test_fraction", "float", "--test-fraction",
           "csv: the share of the series at its end kept for testing"),
    Option("seq_len", "task.seq_len", "int", "--seq-len", "the task's sequence length"),
    Option("batch", "task.batch", "int", "--batch", "task sequences per training step"),
    # the network
    Option("arch", "model.arch", "str", "--arch", choices=ARCHS, label="Architecture", page="network"),
    Option("hidden", "model.hidden", "int", "--hidden", label="Hidden units", low=1, page="network"),
    Option("gain", "model.gain", "float", "--gain"),
    Option("orthogonal", "model.orthogonal", "bool", "--orthogonal",
           "rnn: a random orthogonal recurrent matrix times the gain (--no-orthogonal: Gaussian)"),
    Option("bias", "model.bias", "bool", "--bias", "recurrent biases (--no-bias: none)"),
    Option("relax_steps", "model.relax_steps", "int", "--relax-steps",
           "steps the autonomous network runs from noise to set its initial state"),
    # training
    Option("seeds", None, "int", "--seeds", "how many seeds (0..N-1), or the seeds themselves, comma-separated "
           "(3,7; a single seed: 5,)", label="Seeds (networks per schedule)", low=1, page="network", cli="seeds"),
    Option("steps", "train.steps", "int", "--steps", label="Training steps", low=1, page="network"),
    Option("lr", "train.lr", "float", "--lr", "task training's learning rate (Adam)"),
    Option("clip", "train.clip", "float", "--clip", "task training's gradient-norm clip per parameter array (0: off)"),
    Option("eval_every", "train.eval_every", "int", "--eval-every",
           "evaluate every M training steps (adaptive's --every is a multiple of it)"),
    Option("eval_batch", "train.eval_batch", "int", "--eval-batch", "sequences per test batch"),
    Option("success_acc", "train.success_acc", "float", "--success-acc"),
    Option("log_every", "train.log_every", "int", "--log-every", "record the training loss every M steps"),
    Option("monitor_k", "train.monitor_k", "int", "--monitor-k", "exponents measured at each evaluation"),
    Option("diag_len", "train.diag_len", "int", "--diag-len", "window of the spectrum and Jacobian snapshots"),
    Option("diag_transient", "train.diag_transient", "int", "--diag-transient",
           "transient discarded before the spectrum snapshots"),
    Option("diagnostics", "train.diagnostics", "bool", "--diagnostics",
           "full spectra, κ₂ and gradient-vs-horizon snapshots at phase boundaries (--no-diagnostics: none)"),
    Option("diag_dtype", "train.diag_dtype", "str", "--diag-dtype",
           "the stored spectra, κ₂ and gradient-vs-horizon snapshots: float64 (default, exact down to strongly "
           "negative exponents) or float32 (faster)", choices=DIAG_DTYPES),
    Option("stop_when_solved", "train.stop_when_solved", "bool", "--stop-when-solved",
           "a network that met the success criterion stops training there (its final accuracy is its accuracy "
           "at convergence) and the comparison ends once every network has succeeded, diverged or reached "
           "--steps; success rates and convergence steps are the same (--no-stop-when-solved: every network "
           "trains the whole budget; default: on for quick, off for paper)",
           label="Stop each network when solved", page="network",
           page_help="a network that reaches the success criterion trains no further: success rate and "
                     "convergence steps are the same, the final accuracy is then the accuracy at convergence"),
    Option("device", None, "str", "--device", choices=DEVICES, label="Device", page="network"),
    # schedules and flossing
    Option("schedules", None, "names", "--schedules", "comma-separated: " + ",".join(SCHEDULES),
           choices=SCHEDULES, label="Schedules to compare", what="schedule", page="flossing"),
    Option("k", "floss.k", "int", "--k", label="k, exponents flossed", low=1, page="flossing"),
    Option("qr_every", "floss.qr_every", "int", "--qr-every"),
    Option("floss_len", "floss.seq_len", "int", "--floss-len", "flossing window length"),
    Option("floss_transient", "floss.transient", "int", "--floss-transient",
           "window steps discarded before averaging"),
    Option("qr", "floss.qr", "str", "--qr",
           "flossing QR: auto (the rnn's window kernel), householder or cholesky (autograd)", choices=QR_CHOICES),
    Option("floss_lr", "floss.lr", "float", "--floss-lr", "flossing's own learning rate (Adam)"),
    Option("floss_batch", "floss.batch", "int", "--floss-batch", "flossing sequences per step"),
    Option("floss_target", "floss.target", "float", "--floss-target", "the value the exponents are pushed to"),
    Option("through_states", "floss.through_states", "bool", "--through-states",
           "flossing differentiates through the state trajectory too (--no-through-states: only through "
           "the one-step Jacobians)"),
    Option("pre_steps", "schedule.pre_steps", "int", "--pre-steps", label="pre: flossing steps before training",
           key="pre", low=0, page="details"),
    Option("inter_steps", "schedule.inter_steps", "int", "--inter-steps", label="inter: flossing steps per phase",
           key="is", low=0, page="details"),
    Option("inter_at", "schedule.inter_at", "ints", "--inter-at", label="inter: before training steps", key="ia", page="details"),
    Option("every", "schedule.every", "int", "--every", label="adaptive / joint: every M steps", low=1, page="details"),
    Option("threshold", "schedule.threshold", "float", "--threshold",
           label="adaptive: floss while max |λ| exceeds", key="thr", low=0.0, page="details"),
    Option("adaptive_k", "schedule.adaptive_k", "int", "--adaptive-k", "adaptive: exponents measured",
           label="adaptive: exponents measured", key="ak", low=1, page="details"),
    Option("adaptive_steps", "schedule.adaptive_steps", "int", "--adaptive-steps",
           "adaptive: flossing steps per triggered phase"),
    Option("weight", "schedule.weight", "float", "--weight", label="joint: weight of the flossing term", key="w",
           low=0.0, page="details"),
    Option("floss_design", None, "str", "--floss-design",
           "lab (default: truncated state gradient, clipping, stopping rule; bench/floss_study.py) or reference "
           "(the paper's code exactly)", choices=DESIGNS, label="Flossing design", key="design",
           page_help="lab: truncated state gradient, clipping and a stopping rule, chosen by bench/floss_study.py; "
                     "reference: the paper's code exactly", page="details", what="flossing design"),
    Option("name", None, "str", "--name"),
)
OPTIONS: dict[str, Option] = {o.name: o for o in _TABLE}
NAMES = tuple(OPTIONS)                                   # every make_spec keyword
FIELDS = {o.name: tuple(o.field.split(".")) for o in _TABLE if o.field}   # keyword -> (section, field)
CLI = tuple(o for o in _TABLE if o.flag)                 # the command line's comparison options
PAGE = tuple(o for o in _TABLE if o.page)                # the Launch page's widgets, in table order
PAGE_SECTIONS = ("task", "network", "flossing", "details", "series")   # series: after a CSV upload (task csv)


# ------------------------------------------------------------------------------------ checking values
def check(values: dict) -> None:
    """ValueError (one line, generated from the table) for a given value outside its option's choices:
    ``unknown arch 'x'; choose one of rnn, gru, lstm``. make_spec runs it first; the ranges of numbers are
    checked by the configs' validators (which also guard a library user calling ``train`` directly)."""
    for name, value in values.items():
        o = OPTIONS.get(name)
        if o is None or o.choices is None or value is None:
            continue
        given = ([n.strip() for n in value.split(",") if n.strip()] if isinstance(value, str) else list(value)) \
            if o.kind == "names" else [value]
        for v in given:
            if v not in o.choices:
                raise ValueError(f"unknown {o.what or o.name} {v!r}; choose one of {', '.join(o.choices)}")


# ------------------------------------------------------------------------------------ reading a spec
def _design(spec: dict) -> str:
    from .configs import FlossConfig, design_of   # the design is a property of the floss config

    return design_of(FlossConfig(**spec["floss"]))


_READ: dict[str, Callable[[dict], Any]] = {
    "delays": lambda d: list(d["delays"]), "seeds": lambda d: len(d["seeds"]),
    "schedules": lambda d: [s["name"] for s in d["schedules"]], "device": lambda d: d["device"],
    "name": lambda d: d["name"], "floss_design": _design,
}


def read(name: str, spec: dict):
    """Option ``name``'s value in a spec dict (``spec_to_dict`` form); schedule options come from the first
    schedule (make_spec applies them to every schedule); lists come back as lists."""
    if name in _READ:
        return _READ[name](spec)
    section, fld = FIELDS[name]
    value = spec["schedules"][0][fld] if section == "schedule" else spec[section][fld]
    return list(value) if isinstance(value, (list, tuple)) else value


def on_page(section: str) -> tuple[Option, ...]:
    """The Launch page's options of one section, in table order."""
    return tuple(o for o in PAGE if o.page == section)


def page_defaults(spec: dict) -> dict:
    """The Launch page's starting widget values: every page option's value in ``spec`` (a dict)."""
    return {o.name: read(o.name, spec) for o in PAGE}


# ------------------------------------------------------------------------------------ the command line
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _seeds(text: str) -> int | list[int]:
    """--seeds: '9' -> 9 (the seeds 0..8); '3,7' -> [3, 7], the seeds themselves; '5,' -> [5]."""
    return _int_list(text) if "," in text else _int(text)


PARSE = {"int": _int, "float": _finite_float, "ints": _int_list, "str": str, "names": str, "seeds": _seeds}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a comparison (compare and submit share them), one per CLI option of the table
    (a bool option: ``--bias`` / ``--no-bias``). Every default is None: "not given", the preset's value."""
    parser.add_argument("--preset", choices=list(PRESETS), default="quick")
    for o in CLI:
        kw: dict = {"dest": o.name, "default": None}
        if o.kind == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = PARSE[o.cli or o.kind]
        if o.choices and o.kind != "names":
            kw["choices"] = list(o.choices)
        if o.help:
            kw["help"] = o.help
        parser.add_argument(o.flag, **kw)


def spec_from_args(args: argparse.Namespace):
    """A validated ComparisonSpec from parsed comparison arguments (ValueError on bad input)."""
    from .experiment import make_spec

    return make_spec(args.preset, **{o.name: getattr(args, o.name) for o in CLI})


class _Refusing(argparse.ArgumentParser):
    def error(self, message: str):
        raise ValueError(message)


def parse_command(argv: list[str]):
    """``compare`` arguments -> the spec the command line would build (ValueError if they do not parse)."""
    parser = _Refusing(prog="compare", add_help=False)
    add_arguments(parser)
    return spec_from_args(parser.parse_args(argv))


def _arg(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, float) else str(value)


def _seed_arg(seeds) -> str:
    """The --seeds value of a seed list: the count when they are 0..N-1, else the seeds ('5,' for one)."""
    seeds = [int(x) for x in seeds]
    if seeds == list(range(len(seeds))):
        return str(len(seeds))
    return ",".join(map(str, seeds)) + ("," if len(seeds) == 1 else "")


def _option(o: Option, value) -> list[str]:
    """One option on the command line: ``['--hidden', '8']``, ``['--no-bias']``."""
    if o.kind == "bool":
        return [o.flag if value else "--no-" + o.flag[2:]]
    return [o.flag, _arg(value)]


def _design_for(spec: dict) -> str | None:
    """The named flossing design the command gives for ``spec``: its own, or for a 'custom' one (a design
    with some of its fields set by single options, e.g. ``through_states``) the design that those options
    turn into it, fewest changed first; None when no design and options make it."""
    from .configs import DESIGN_FIELDS, FlossConfig, with_design

    floss = FlossConfig(**spec["floss"])
    settable = {f for section, f in FIELDS.values() if section == "floss"}
    best = None
    for name in DESIGNS:
        changed = [f for f in DESIGN_FIELDS if getattr(with_design(floss, name), f) != getattr(floss, f)]
        if set(changed) <= settable and (best is None or len(changed) < best[1]):
            best = (name, len(changed))
    return best[0] if best else None


ALWAYS = ("task", "delays", "seeds", "schedules")   # on every command, whatever the preset's defaults


def command_options(spec: dict) -> list[list[str]]:
    """The ``compare`` options that rebuild ``spec`` (a dict), one list per option (``['--hidden', '8']``):
    preset, task, delays, seeds and schedules always, then, in table order, every CLI option whose value
    differs from what the preset (with the spec's flossing design) gives. A field no option sets is left
    to the preset (the report's parse-back check names any that then differ)."""
    from .experiment import make_spec, spec_to_dict

    preset = spec["preset"] if spec["preset"] in PRESETS else "quick"   # an unknown preset: the check names it
    names = read("schedules", spec)
    design = _design_for(spec)
    plain = spec_to_dict(make_spec(preset, schedules=names))
    default = spec_to_dict(make_spec(preset, schedules=names, floss_design=design)) if design else plain
    out = [["--preset", preset]]
    for o in CLI:
        if o.name == "seeds":
            out.append([o.flag, _seed_arg(spec["seeds"])])
            continue
        if o.name == "floss_design":
            if design and design != read(o.name, plain):
                out.append([o.flag, design])
            continue
        value = read(o.name, spec)
        if o.choices and o.kind != "names" and value not in o.choices:
            continue   # a value no flag sets (the parse-back check names it)
        if o.name in ALWAYS or (value is not None and value != read(o.name, default)):
            out.append(_option(o, value))
    return out


def command_args(spec: dict) -> list[str]:
    """``command_options`` flattened: the ``compare`` arguments that rebuild ``spec``."""
    return [a for option in command_options(spec) for a in option]
