"""A user-style nn.LSTM model trained on delayed XOR, with and without gradient flossing, in a plain
PyTorch loop: the library is used only through ``floss_core.adapters`` (and ``floss_core.tasks`` for the
data). Both runs start from the same weights and see the same batches; the flossed one first runs a
flossing phase on its LSTM (Engelken, NeurIPS 2023: push the top k Lyapunov exponents toward 0).

    OMP_NUM_THREADS=1 python examples/lstm_xor.py                  # under a minute on one CPU core
    OMP_NUM_THREADS=1 python examples/lstm_xor.py --delay 40 --steps 600

Prints, for each run, λ_1 of the LSTM before and after (on a long window of random bits), the
trainability forecast, and the test accuracy on the scored steps.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from floss_core.adapters import floss, forecast, spectrum  # noqa: E402
from floss_core.tasks import TaskConfig, make_batch  # noqa: E402


class Model(nn.Module):
    """What a user has: an LSTM and a linear readout, batch_first."""

    def __init__(self, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):                    # (B, T, 1) -> logits (B, T, 1)
        out, _ = self.lstm(x)
        return self.head(out)


def batch(task: TaskConfig, gen: torch.Generator):
    b = make_batch(task, gen)                # time-major (T, B, C), mask (T,) of scored steps
    return b.inputs.transpose(0, 1), b.targets.transpose(0, 1), b.mask


def lambda1(model: Model) -> float:
    bits = torch.randint(0, 2, (1, 600, 1), generator=torch.Generator().manual_seed(123)).float()
    return float(spectrum(model.lstm, bits, k=1, transient=100)[0, 0])


def train(model: Model, task: TaskConfig, steps: int, *, lr: float, seed: int) -> float:
    """Plain Adam on BCE over the scored steps; returns the test accuracy on a fresh batch of 256."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y, mask = batch(task, gen)
        loss = nn.functional.binary_cross_entropy_with_logits(model(x)[:, mask], y[:, mask])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    with torch.no_grad():
        x, y, mask = batch(TaskConfig(**{**task.__dict__, "batch": 256}), torch.Generator().manual_seed(seed + 1))
        return float(((model(x)[:, mask] > 0) == (y[:, mask] > 0.5)).float().mean())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="nn.LSTM on delayed XOR, with and without gradient flossing")
    p.add_argument("--delay", type=int, default=30)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--steps", type=int, default=400, help="training steps")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--k", type=int, default=16, help="exponents flossed")
    p.add_argument("--floss-steps", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    task = TaskConfig(name="xor", delay=a.delay, seq_len=a.delay + 40, batch=32)
    torch.manual_seed(a.seed)
    base = Model(a.hidden)
    flossed = copy.deepcopy(base)            # the same initial weights
    lam0 = lambda1(base)
    print(f"untrained nn.LSTM(1, {a.hidden}): λ_1 = {lam0:+.4f}; {forecast(lam0, a.delay)['verdict']}")

    t0 = time.perf_counter()
    acc = train(base, task, a.steps, lr=a.lr, seed=a.seed)
    print(f"without flossing: test accuracy {acc:.3f}, λ_1 {lam0:+.4f} -> {lambda1(base):+.4f} "
          f"({time.perf_counter() - t0:.0f} s)")

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(a.seed + 7)
    floss(flossed.lstm, lambda i: torch.randint(0, 2, (1, 55, 1), generator=gen).float(), k=a.k,
          steps=a.floss_steps, lr=1e-2, transient=16)               # the paper's window: 55 steps, 16 transient
    lam_f = lambda1(flossed)
    acc = train(flossed, task, a.steps, lr=a.lr, seed=a.seed)
    print(f"with flossing:    test accuracy {acc:.3f}, λ_1 {lam0:+.4f} -> {lam_f:+.4f} after flossing "
          f"-> {lambda1(flossed):+.4f} after training ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
