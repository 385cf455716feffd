"""Flossing a checkpoint in the background, for the dashboard (a long job must not run in the Streamlit
script): ``start_floss_job`` validates the request and starts a separate Python process, which runs
``floss_job`` and leaves its progress and result in a folder; ``floss_job_status`` reads them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from ..files import atomic_write
from .checkpoint import load_checkpoint, save_state_dict
from .inputs import load_inputs
from .regularizer import _check_floss
from .reports import floss_checkpoint, floss_split
from .stepper import _check_k, module_step


def start_floss_job(data: bytes, settings: dict, *, k: int, steps: int, lr: float,
                    inputs: tuple[bytes, str] | None = None):
    """Check the request here (a bad checkpoint, k, steps or lr, or a sample of inputs that ``load_inputs``
    refuses or that is too short to split for flossing, raises ValueError and starts nothing), then floss in a
    new Python process (``_floss_job_main``; not multiprocessing, whose spawn would re-run the Streamlit
    script that called this). ``inputs``: (the bytes, the file name) of a sample of the model's inputs,
    kept in the job's folder; None: random bits. Returns (folder, process: ``subprocess.Popen``);
    read it with ``floss_job_status``."""
    module = load_checkpoint(data, **settings)
    _check_k(k, module_step(module).dim)
    _check_floss(steps, lr)
    sample_file = None
    if inputs is not None:
        sample = load_inputs(inputs[0], inputs[1], module)
        floss_split(sample)                      # long enough for flossing and a held-out measurement
        sample_file = sample.name                # sanitised: no folders
    folder = tempfile.mkdtemp(prefix="floss-job-")
    with open(os.path.join(folder, "input.pt"), "wb") as f:
        f.write(data)
    if sample_file is not None:
        os.mkdir(os.path.join(folder, "sample"))
        with open(os.path.join(folder, "sample", sample_file), "wb") as f:
            f.write(inputs[0])
    with open(os.path.join(folder, "request.json"), "w") as f:
        json.dump({"settings": settings, "k": k, "steps": steps, "lr": lr, "inputs": sample_file}, f)
    # where floss_core is importable: the folder above the package floss_core/adapters/
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    with open(os.path.join(folder, "stderr.txt"), "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from floss_core.adapters.job import _floss_job_main; "
                                 "_floss_job_main(sys.argv[1])", folder], env=env, stdout=subprocess.DEVNULL, stderr=err)
    return folder, proc


def floss_job(folder: str, settings: dict, *, k: int, steps: int, lr: float, inputs: str | None = None) -> None:
    """The process body: floss ``folder/input.pt`` (``load_checkpoint(**settings)``, ``floss_checkpoint``)
    on one torch thread, on the sample ``folder/sample/<inputs>`` when named (``load_inputs``), else on random
    bits, writing ``progress.json`` as it goes, then ``flossed.pt`` and ``result.json``, or ``error.txt``
    with a one-line reason."""
    torch.set_num_threads(1)
    last = [0.0]

    def write(name: str, data: str | bytes) -> None:    # atomic: a reader never sees half a file
        atomic_write(os.path.join(folder, name), data)

    def on_step(i: int, loss: float) -> None:
        if time.monotonic() - last[0] > 0.2 or i + 1 == steps:
            last[0] = time.monotonic()
            write("progress.json", json.dumps({"step": i + 1, "loss": loss}))
    try:
        with open(os.path.join(folder, "input.pt"), "rb") as f:
            module = load_checkpoint(f.read(), **settings)
        sample = None
        if inputs is not None:
            with open(os.path.join(folder, "sample", os.path.basename(inputs)), "rb") as f:
                sample = load_inputs(f.read(), inputs, module)
        out = floss_checkpoint(module, k=k, steps=steps, lr=lr, on_step=on_step, inputs=sample)
        write("flossed.pt", save_state_dict(module))
        write("result.json", json.dumps(out, allow_nan=True))
    except Exception as exc:  # reported to the page, never lost with the process
        msg = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        write("error.txt", (msg.splitlines() or [type(exc).__name__])[0])


def floss_job_status(folder: str, proc=None) -> dict:
    """What a flossing job left: ``{"state": "running", "step", "loss"}``, ``{"state": "done", "out",
    "weights"}`` (floss_checkpoint's dict and the flossed state_dict's bytes) or ``{"state": "failed",
    "error"}``, also when the process ended without a word (killed, out of memory)."""
    def path(name):
        return os.path.join(folder, name)
    alive = proc is None or proc.poll() is None    # first: a process found ended has written all it will
    if os.path.exists(path("result.json")):
        with open(path("result.json")) as f, open(path("flossed.pt"), "rb") as w:
            return {"state": "done", "out": json.load(f), "weights": w.read()}
    if os.path.exists(path("error.txt")):
        with open(path("error.txt")) as f:
            return {"state": "failed", "error": f.read()}
    if not alive:
        try:
            with open(path("stderr.txt"), errors="replace") as f:
                last = [ln.strip() for ln in f if ln.strip()][-1:]
        except OSError:
            last = []
        return {"state": "failed", "error": f"the flossing process ended without a result (exit code "
                                            f"{proc.returncode})" + "".join(f": {ln}" for ln in last)}
    try:
        with open(path("progress.json")) as f:
            return {"state": "running", **json.load(f)}
    except (OSError, ValueError):
        return {"state": "running", "step": 0, "loss": None}


def _floss_job_main(folder: str) -> None:
    """The entry point of the process ``start_floss_job`` starts: the request is in ``folder/request.json``."""
    with open(os.path.join(folder, "request.json")) as f:
        req = json.load(f)
    floss_job(folder, req["settings"], k=req["k"], steps=req["steps"], lr=req["lr"], inputs=req.get("inputs"))
