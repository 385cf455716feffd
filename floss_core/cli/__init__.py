"""Command line (``python -m floss_core ...`` runs ``main``): ``python -m floss_core {spectrum,floss,compare,...} [--json]``.

Bad input gets one line on stderr naming the valid values, and exit code 2. Human-readable tables
by default, one JSON object on stdout with ``--json``. The commands live by job: ``network`` (spectrum,
floss, forecast: one freshly initialised network), ``comparison`` (compare, submit, worker, status,
cancel, report), ``advise`` (the schedule search), and what they share in ``common``. Importing this package loads no torch.
"""
from __future__ import annotations

import argparse
import sys

from . import advise as _A, comparison as _C, network as _N
from .comparison import _add_comparison_args, spec_from_args   # the comparison's arguments (option table)
from .network import DESIGN_CHOICES, STATE_GRAD_CHOICES        # tests: equal to the train registries

__all__ = ["COMMANDS", "DESIGN_CHOICES", "STATE_GRAD_CHOICES", "_Parser", "_add_comparison_args", "main",
           "spec_from_args"]


# third-party packages outside the core install (pyproject.toml) -> the extra that brings them
EXTRAS = {"pandas": "lab", "scipy": "lab", "tqdm": "lab", "optuna": "lab", "dask": "dask", "distributed": "dask",
          "playwright": "dashboard", "plotly": "dashboard"}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


COMMANDS = {"spectrum": (_N._add_spectrum, _N._cmd_spectrum), "floss": (_N._add_floss, _N._cmd_floss),
            "compare": (_C._add_compare, _C._cmd_compare), "submit": (_C._add_submit, _C._cmd_submit),
            "worker": (_C._add_worker, _C._cmd_worker), "status": (_C._add_status, _C._cmd_status),
            "cancel": (_C._add_cancel, _C._cmd_cancel), "report": (_C._add_report, _C._cmd_report),
            "forecast": (_N._add_forecast, _N._cmd_forecast), "advise": (_A._add_advise, _A._cmd_advise)}


def main(argv=None) -> None:
    parser = _Parser(prog="floss_core", description="Gradient Flossing Lab")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    args = parser.parse_args(argv)
    try:
        COMMANDS[args.command][1](args)
    except ModuleNotFoundError as e:    # the core install (pip install .) leaves the lab's packages out
        extra = EXTRAS.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        sys.stderr.write(f"floss_core {args.command}: needs {e.name}, which the library-only install leaves out; "
                         f"pip install 'gradient-flossing-lab[{extra}]' (or pip install -r requirements.txt)\n")
        raise SystemExit(2) from None
