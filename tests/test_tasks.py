"""Tests for floss_core.tasks: hand-checked targets, scoring mask, validation, losses and scores (CSV
loading and refusals: test_series.py)."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from floss_core.tasks import (TASKS, Batch, TaskConfig, loss_kind, make_batch, make_ensemble_batch,
                              make_test_batch, r2_score, task_accuracy, task_dims, task_loss, uses, validate_task)

BITS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0]   # s_0 .. s_11


def _targets(name, order=1, delay=4):
    cfg = TaskConfig(name=name, delay=delay, order=order, seq_len=len(BITS))
    bits = torch.tensor(BITS, dtype=torch.float32).view(-1, 1, 1)
    return TASKS[name](bits, cfg).view(-1).tolist()


# ------------------------------------------------------------ hand-checked targets (d = 4)

def test_copy_targets_by_hand():
    # y_t = s_{t-4} for t >= 4
    assert _targets("copy") == [0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0]


def test_xor_targets_by_hand():
    # y_t = s_{t-2} XOR s_{t-4}: t=4: s2^s0 = 1^1 = 0, t=5: s3^s1 = 1^0 = 1, ...
    assert _targets("xor") == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1]


def test_parity_targets_by_hand():
    # order 2: y_t = s_{t-1}^s_{t-2}^s_{t-3}^s_{t-4}: t=4: 1^1^0^1 = 1, t=5: 0^1^1^0 = 0, ...
    assert _targets("parity", order=2) == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1]
    assert _targets("parity", order=1) == _targets("xor")


@pytest.mark.parametrize("name,order", [("copy", 1), ("xor", 1), ("parity", 2)])
def test_mask_starts_at_delay_and_targets_use_only_seen_bits(name, order):
    d, T = 8, 30
    cfg = TaskConfig(name=name, delay=d, order=order, seq_len=T, batch=1)
    batch = make_batch(cfg, torch.Generator().manual_seed(0))
    assert batch.mask.dtype == torch.bool and batch.mask.shape == (T,)
    assert batch.mask.tolist() == [False] * d + [True] * (T - d)
    # flip each input bit in turn: a scored target at t may only change for bits in [t-d, t]
    base = TASKS[name](batch.inputs, cfg)
    for k in range(T):
        flipped = batch.inputs.clone()
        flipped[k] = 1 - flipped[k]
        changed = (TASKS[name](flipped, cfg) != base).view(T)
        for t in torch.nonzero(changed & batch.mask).view(-1).tolist():
            assert t - d <= k <= t
        if k + d < T:   # the oldest bit a target needs is exactly d steps back
            assert changed[k + d]


def _perfect_logits(inputs, name, delay, order):
    """A predictor that sees the inputs and computes the target by the formula (loops, no
    shifting tricks). Where a needed bit would lie before t=0 it guesses 1."""
    n_bits = {"copy": 1, "xor": 2, "parity": 2 ** order}[name]
    step = delay // n_bits
    T = inputs.shape[0]
    out = torch.empty_like(inputs)
    for t in range(T):
        idx = [t - j * step for j in range(1, n_bits + 1)]
        if min(idx) < 0:
            out[t] = 1.0
        else:
            out[t] = sum(inputs[i] for i in idx) % 2
    return 10.0 * (2 * out - 1)


@pytest.mark.parametrize("name,order", [("copy", 1), ("xor", 1), ("parity", 1), ("parity", 3)])
def test_perfect_predictor_scores_exactly_one(name, order):
    cfg = TaskConfig(name=name, delay=16, order=order, seq_len=60, batch=32, channels=2)
    b = make_batch(cfg, torch.Generator().manual_seed(1))
    logits = _perfect_logits(b.inputs, name, cfg.delay, order)
    acc = task_accuracy(logits[:, None], b.targets[:, None], b.mask)
    assert acc.tolist() == [1.0]
    # one step earlier the predictor has to guess: scoring it would drop the accuracy
    early = b.mask.clone()
    early[cfg.delay - 1] = True
    assert task_accuracy(logits[:, None], b.targets[:, None], early).item() < 1.0


def test_multichannel_channels_are_independent():
    cfg = TaskConfig(name="xor", delay=6, channels=3, seq_len=40, batch=8)
    b = make_batch(cfg, torch.Generator().manual_seed(2))
    assert b.inputs.shape == (40, 8, 3) and b.targets.shape == (40, 8, 3)
    assert task_dims(cfg) == (3, 3)
    for c in range(3):
        single = TASKS["xor"](b.inputs[..., c:c + 1], cfg)
        assert torch.equal(b.targets[..., c:c + 1], single)
    assert not torch.equal(b.inputs[..., 0], b.inputs[..., 1])
    assert set(b.inputs.unique().tolist()) == {0.0, 1.0} and b.inputs.dtype == torch.float32


def test_reproducible_batches():
    cfg = TaskConfig(name="parity", order=2, delay=8, seq_len=30, batch=4)
    a = make_batch(cfg, torch.Generator().manual_seed(5))
    b = make_batch(cfg, torch.Generator().manual_seed(5))
    c = make_batch(cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs)
    assert make_batch(cfg, torch.Generator().manual_seed(5), batch=7).inputs.shape == (30, 7, 1)


@pytest.mark.parametrize("name", ["copy", "xor", "parity"])
def test_ensemble_batch_is_stacked_single_batches(name):
    # the ensemble draws each member's bits from its own generator and computes the targets at once
    cfg = TaskConfig(name=name, delay=8, seq_len=20, batch=3, channels=2, order=2)
    ens = make_ensemble_batch(cfg, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    singles = [make_batch(cfg, torch.Generator().manual_seed(s)) for s in (1, 2, 3)]
    assert ens.inputs.shape == (20, 3, 3, 2) and ens.targets.shape == (20, 3, 3, 2)
    for e, s in enumerate(singles):
        assert torch.equal(ens.inputs[:, e], s.inputs)
        assert torch.equal(ens.targets[:, e], s.targets)
    assert torch.equal(ens.mask, singles[0].mask)


@pytest.mark.parametrize("changes,message", [
    (dict(name="xorr"), "unknown task 'xorr'; choose one of copy, xor, parity, csv"),
    (dict(delay=0), "delay must be >= 1, got 0"),
    (dict(delay=21), "delay must be even for xor, got 21"),
    (dict(delay=400), r"delay 400 does not fit in a sequence of 300 steps \(seq_len\): choose a delay below 300"),
    (dict(delay=2.5), "delay must be an integer"),
    (dict(batch=0), "batch must be >= 1, got 0"),
    (dict(channels=0), "channels must be >= 1, got 0"),
    (dict(name="parity", order=2, delay=30), r"delay must be divisible by 2\*\*order = 4"),
    (dict(name="parity", order=0), "order must be >= 1, got 0"),
    (dict(name="csv"), "csv_path must name a CSV file"),
])
def test_validate_task_messages(changes, message):
    with pytest.raises(ValueError, match=message):
        validate_task(dataclasses.replace(TaskConfig(), **changes))


def test_validate_task_accepts_defaults():
    for name in ("copy", "xor", "parity"):
        validate_task(TaskConfig(name=name))
    assert loss_kind(TaskConfig()) == "bce"


# ------------------------------------------------------------ losses and scores

def test_task_loss_bce_matches_torch_on_masked_entries():
    g = torch.Generator().manual_seed(0)
    T, E, B, C = 12, 3, 4, 2
    logits = torch.randn(T, E, B, C, generator=g, requires_grad=True)
    targets = torch.randint(0, 2, (T, E, B, C), generator=g).float()
    mask = torch.arange(T) >= 5
    loss = task_loss(logits, targets, mask, "bce")
    assert loss.shape == (E,)
    for e in range(E):
        expected = F.binary_cross_entropy_with_logits(logits[5:, e], targets[5:, e])
        torch.testing.assert_close(loss[e], expected)
    loss.sum().backward()
    assert logits.grad[:5].abs().sum() == 0 and logits.grad[5:].abs().sum() > 0


def test_task_loss_mse_and_accuracy_by_hand():
    preds = torch.tensor([9.0, 1.0, -1.0, 3.0]).view(4, 1, 1, 1)
    targets = torch.tensor([0.0, 1.0, 1.0, 1.0]).view(4, 1, 1, 1)
    mask = torch.tensor([False, True, True, True])
    # scored errors 0, -2, 2 -> mean squared error 8/3
    torch.testing.assert_close(task_loss(preds, targets, mask, "mse"), torch.tensor([8 / 3]))
    # scored logits 1, -1, 3 vs targets 1, 1, 1 -> 2 of 3 correct
    torch.testing.assert_close(task_accuracy(preds, targets, mask), torch.tensor([2 / 3]))
    with pytest.raises(ValueError, match="unknown loss kind"):
        task_loss(preds, targets, mask, "hinge")


def test_r2_score():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(30, 2, 5, 3, generator=g)
    mask = torch.arange(30) >= 4
    torch.testing.assert_close(r2_score(y, y, mask), torch.ones(2))
    channel_mean = y[mask].mean(dim=(0, 2), keepdim=True).expand(26, 2, 5, 3)
    means = torch.zeros_like(y)
    means[mask] = channel_mean
    torch.testing.assert_close(r2_score(means, y, mask), torch.zeros(2), atol=1e-6, rtol=0)
    assert torch.isnan(r2_score(y, torch.ones_like(y), mask)).all()   # no variance -> NaN


def test_batch_is_frozen():
    b = make_batch(TaskConfig(seq_len=30, delay=4), torch.Generator().manual_seed(0))
    assert isinstance(b, Batch)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.mask = None


def test_a_bit_tasks_test_batch_is_a_fresh_random_one_per_member():
    cfg = TaskConfig(name="xor", delay=4, seq_len=12, batch=3)
    a = make_test_batch(cfg, [torch.Generator().manual_seed(s) for s in (1, 2)], 5)
    b = make_ensemble_batch(cfg, [torch.Generator().manual_seed(s) for s in (1, 2)], split="test", batch=5)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets) and a.inputs.shape[2] == 5


def test_the_entries_say_how_success_is_judged():
    # bit tasks: accuracy at the first evaluation that reaches success_acc; csv: the final skill over the
    # better naive baseline reaching skill_margin (issue 15)
    for name in ("copy", "xor", "parity"):
        e = TASKS[name]
        assert (e.metric, e.judged, e.threshold(TaskConfig(), 0.9), e.baselines) == ("test_acc", "first", 0.9, None)
    csv = TASKS["csv"]
    assert (csv.metric, csv.judged, csv.threshold(TaskConfig(skill_margin=0.3), 0.9)) == ("test_skill", "final", 0.3)
    assert csv.success_text().startswith("final test skill") and TASKS["xor"].success_text() == "test accuracy"
    assert all(uses("csv", f) for f in ("columns", "missing", "period", "skill_margin"))
    assert not uses("xor", "period") and not uses("csv", "r2_threshold")
