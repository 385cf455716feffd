"""Test-session settings.

One torch thread per test process (and per subprocess, through the environment): the tests use tiny
matrices, where a second thread only adds synchronisation, and on a shared 2-core machine torch's
default threads make such work 6-12x slower (bench/RESULTS.md, "Ensemble vs sequential")."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
# one worker process unless a test asks for a pool (the default, one per core, spawns processes that each
# import torch: seconds per test for nothing at these sizes)
os.environ.setdefault("FLOSS_WORKERS", "1")


def pytest_configure(config):
    # build the compiled time loop once, up front (~20 s on a fresh machine, then cached), so no test that
    # starts a CLI or worker subprocess pays for it inside its own timeout; if it can't be built, a
    # warning says why and the Python loop runs (tests/test_native.py fails where a compiler exists)
    from floss_core import native
    native.load()
