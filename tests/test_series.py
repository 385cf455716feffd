"""Tests for floss_core.series: CSV windows d steps ahead within their split, the cache, refusals (bad
content, missing, huge, too few rows, constant training part) and the csv config ranges."""
import dataclasses

import numpy as np
import pytest
import torch

from floss_core.series import load_series
from floss_core.tasks import TaskConfig, loss_kind, make_batch, task_dims, validate_task

# ------------------------------------------------------------ CSV forecasting

def _write(tmp_path, text, name="s.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _good_csv(tmp_path, n=200):
    t = np.arange(n)
    a = np.sin(0.1 * t) + 0.01 * t   # strictly distinct values: lets us find window starts
    b = np.random.default_rng(0).normal(3.0, 2.0, n)
    lines = ["a,b"] + [f"{float(x)!r},{float(y)!r}" for x, y in zip(a, b)]
    return _write(tmp_path, "\n".join(lines) + "\n"), np.stack([a, b], 1)


def test_csv_windows_are_the_series_d_steps_ahead(tmp_path):
    path, raw = _good_csv(tmp_path)
    cfg = TaskConfig(name="csv", csv_path=path, delay=3, seq_len=20, batch=6,
                     test_fraction=0.25)
    validate_task(cfg)
    assert task_dims(cfg) == (2, 2) and loss_kind(cfg) == "mse"
    np.testing.assert_allclose(load_series(path).numpy(), raw, rtol=1e-6)
    n_train = 150
    mean, std = raw[:n_train].mean(0), raw[:n_train].std(0, ddof=1)
    z = (raw - mean) / std
    for split, lo, hi in (("train", 0, n_train), ("test", n_train, 200)):
        b = make_batch(cfg, torch.Generator().manual_seed(0), split=split)
        assert b.inputs.shape == (20, 6, 2) and b.targets.shape == (20, 6, 2)
        assert b.mask.tolist() == [False] * 3 + [True] * 17
        for k in range(6):
            start = int(np.argmin(np.abs(z[:, 0] - b.inputs[0, k, 0].item())))
            assert lo <= start and start + 20 + 3 <= hi     # windows never cross the split
            np.testing.assert_allclose(b.inputs[:, k].numpy(), z[start:start + 20], atol=1e-5)
            np.testing.assert_allclose(b.targets[:, k].numpy(), z[start + 3:start + 23],
                                       atol=1e-5)


def test_csv_cache_follows_file_changes(tmp_path):
    path = _write(tmp_path, "a\n1\n2\n3\n")
    assert load_series(path).view(-1).tolist() == [1, 2, 3]
    _write(tmp_path, "a\n1\n2\n30\n")
    assert load_series(path).view(-1).tolist() == [1, 2, 30]


BAD_CSV = [
    ("", "empty"),
    ("\n\n", "empty"),
    ("a,b\n", "no data rows"),
    ("1,2\n3,4\n5,6\n", "no header"),
    ("a,b\n1,2\n3,x\n5,6\n", r"column 'b', data row 2: 'x' is not a number"),
    ("date,v\n2024-01-01,1\n2024-01-02,2\n", r"column 'date', data row 1: '2024-01-01'"),
    (",v\n0,1\n1,2\n2,3\n", "column 1 has no name"),
    ("a,b\n1,2\n3,\n5,6\n", r"column 'b', data row 2: '' is empty or NaN"),
    ("a,b\n1,2\nNaN,3\n5,6\n", r"column 'a', data row 2: 'NaN' is empty or NaN"),
    ("a,b\n1,2\n3,4\n5,inf\n", r"column 'b', data row 3: 'inf' is not finite"),
    ("a,b\n1,2\n3,1e300\n5,6\n", r"column 'b', data row 2: '1e300' is not finite"),
    ("a,b\n1,7\n3,7\n5,7\n", "column 'b' is constant"),
    ("a,b\n1,2\n3,4,5\n", "could not parse"),
]


@pytest.mark.parametrize("text,message", BAD_CSV)
def test_csv_refusals(tmp_path, text, message):
    path = _write(tmp_path, text)
    for _ in range(2):   # refused on every call, not only the first (no cached half-load)
        with pytest.raises(ValueError, match=message):
            load_series(path)
        with pytest.raises(ValueError, match=message):
            validate_task(TaskConfig(name="csv", csv_path=path, seq_len=2, delay=1))


def test_csv_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        validate_task(TaskConfig(name="csv", csv_path=str(tmp_path / "nope.csv")))


def test_csv_huge(tmp_path):
    path, _ = _good_csv(tmp_path)
    with pytest.raises(ValueError, match="huge.*bytes"):
        load_series(path, max_bytes=100)
    with pytest.raises(ValueError, match="huge.*more than 50 data rows"):
        load_series(path, max_rows=50)


def test_csv_too_few_rows_says_how_many(tmp_path):
    path, _ = _good_csv(tmp_path, n=200)
    cfg = TaskConfig(name="csv", csv_path=path, seq_len=40, delay=5, test_fraction=0.2)
    # 200 rows -> 160 train, 40 test; each part needs 45 rows; the fewest that work are
    # 223 rows: 178 train and round(223 * 0.2) = round(44.6) = 45 test
    with pytest.raises(ValueError, match=r"200 rows \(160 train, 40 test\).*45 rows.*223 rows"):
        validate_task(cfg)
    with pytest.raises(ValueError, match="200 rows"):
        make_batch(cfg, torch.Generator().manual_seed(0))
    validate_task(dataclasses.replace(cfg, test_fraction=0.25))  # 150 / 50: enough


def test_csv_constant_in_training_part(tmp_path):
    rows = [f"{i},{0 if i < 80 else i}" for i in range(100)]
    path = _write(tmp_path, "a,b\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="column 'b' is constant in the training part"):
        validate_task(TaskConfig(name="csv", csv_path=path, seq_len=5, delay=2))


@pytest.mark.parametrize("changes,message", [
    (dict(test_fraction=0.0), "test_fraction must be strictly between 0 and 1"),
    (dict(test_fraction=1.5), "test_fraction must be strictly between 0 and 1"),
    (dict(r2_threshold=1.5), "r2_threshold must be a number <= 1"),
])
def test_csv_config_ranges(tmp_path, changes, message):
    path, _ = _good_csv(tmp_path)
    cfg = TaskConfig(name="csv", csv_path=path, seq_len=20, delay=3, **changes)
    with pytest.raises(ValueError, match=message):
        validate_task(cfg)
