"""The command line that reruns a stored spec, checked by parsing it back with the command line's own
arguments (both generated from the option table, floss_core/options.py; the report imports no CLI).

``reproduce(spec)`` gives the command as one line, as shell lines (one option per line, `` \\`` at the line
ends: printed, it breaks only between options), the spec fields the command cannot set, and one sentence
saying so (None when the command parses back to exactly the spec).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..experiment import spec_to_dict
from ..options import command_options, parse_command
from ..views.sets import flatten as _flatten

PROGRAM = "python -m floss_core compare"


@dataclass
class Reproduction:
    command: str                       # one line: python -m floss_core compare --preset quick ...
    lines: list[str]                   # the same as shell lines: the program, then one option per line
    missing: list[str] = field(default_factory=list)   # spec fields the command does not give back ([]: exact)
    note: str | None = None            # one sentence when it is not exact (what differs, or why it fails)
    checked_with: str | None = None    # a substitution the check needed on this machine (e.g. --device cpu)


def reproduce(spec: dict) -> Reproduction:
    """The command that reruns ``spec`` (``spec_to_dict`` form), checked by parsing it back."""
    raw = command_options(spec)
    args = [a for o in raw for a in o]
    options = [[shlex.quote(a) for a in o] for o in raw]
    command = " ".join([PROGRAM] + [" ".join(o) for o in options])
    lines = [PROGRAM + " \\"] + [f"  {' '.join(o)}" + (" \\" if i < len(options) - 1 else "")
                                 for i, o in enumerate(options)]
    out = Reproduction(command, lines)
    try:
        got, out.checked_with = _parse_back(args)
    except ValueError as e:
        out.missing = ["(the command does not parse)"]
        out.note = (f"This command does not parse back on this machine ({e}); to rerun the experiment exactly, "
                    "queue its configuration below.")
        return out
    a, b = _plain(_flatten(spec)), _plain(_flatten(got))
    if out.checked_with:                           # the device was given literally; the rest is compared
        a.pop("device", None), b.pop("device", None)
    out.missing = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if out.missing:
        diffs = [f"{k} ({_show(a.get(k))} here, {_show(b.get(k))} from the command)" for k in out.missing]
        out.note = (f"The command line cannot set {_and(diffs)}, so this command reruns a close variant; to "
                    "rerun the experiment exactly, queue its configuration below.")
    return out


def reproduce_command(spec: dict) -> tuple[str, list[str]]:
    """The ``python -m floss_core compare ...`` command that reruns a stored spec (``spec_to_dict``
    form), and the spec fields the command line cannot set ([] when it reproduces the spec exactly;
    checked by parsing the command back)."""
    r = reproduce(spec)
    return r.command, r.missing


def _parse_back(args: list[str]) -> tuple[dict, str | None]:
    """The spec the command line builds from ``args``; a spec for CUDA is checked with ``--device cpu``
    on a machine without CUDA (the device is on the command as given)."""
    try:
        return spec_to_dict(parse_command(args)), None
    except ValueError:
        if "--device" not in args or args[args.index("--device") + 1] != "cuda":
            raise
    args = list(args)
    args[args.index("--device") + 1] = "cpu"
    return spec_to_dict(parse_command(args)), "--device cpu (this machine has no CUDA)"


def _plain(flat: dict) -> dict:
    """Tuples as lists (a spec from JSON holds lists, a fresh one tuples: the same values)."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in flat.items()}


def _show(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) if all(not isinstance(x, dict) for x in v) else "…"
    return "not set" if v is None else repr(v) if isinstance(v, str) else str(v)


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
