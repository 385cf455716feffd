"""The command line that reruns a stored spec, checked by parsing it back with the command line's own
arguments (both generated from the option table, floss_core/options.py; the report imports no CLI)."""
from __future__ import annotations

import shlex

from ..experiment import spec_to_dict
from ..options import command_args, parse_command
from ..views.sets import flatten as _flatten


def reproduce_command(spec: dict) -> tuple[str, list[str]]:
    """The ``python -m floss_core compare ...`` command that reruns a stored spec (``spec_to_dict``
    form), and the spec fields the command line cannot set ([] when it reproduces the spec exactly;
    checked by parsing the command back)."""
    args = command_args(spec)
    cmd = "python -m floss_core compare " + " ".join(shlex.quote(a) for a in args)
    return cmd, _unreproduced(args, spec)


def _unreproduced(args: list[str], spec: dict) -> list[str]:
    try:
        got = spec_to_dict(parse_command(args))
    except ValueError:
        return ["(the command does not parse)"]
    a, b = _flatten(spec), _flatten(got)
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
