"""Tests for floss_core.series: CSV windows d steps ahead within their split, the cache, refusals (bad
content, missing, huge, too few rows, constant training part), the csv config ranges, gaps (refused,
interpolated, dropped), index and chosen columns, and the baselines (persistence and seasonal persistence)
against values computed by hand."""
import dataclasses

import numpy as np
import pytest
import torch

from floss_core import diagnostics as D
from floss_core import series
from floss_core.series import load_series
from floss_core.tasks import TaskConfig, loss_kind, make_batch, make_test_batch, task_dims, validate_task

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
    # a date/time column is the index only in first place (issue 15: first, it is no longer refused)
    ("v,date\n1,2024-01-01\n2,2024-01-02\n",
     r"column 'date', data row 1: '2024-01-01' is not a number \(a date/time column is the index only when"),
    ("date,v\n2024-01-02,1\n2024-01-01,2\n2024-01-03,3\n",
     r"index column 'date' does not move forward in time at data row 2 \('2024-01-01' after '2024-01-02'\)"),
    (",v\n0,1\n1,2\n2,3\n", "column 1 has no name"),
    ("a,a\n1,2\n3,4\n", "column name 'a' appears twice"),
    # a gap is refused naming its rows unless missing= says what to do (issue 15: the message names them all)
    ("a,b\n1,2\n3,\n5,6\n", r"column 'b' has 1 missing value \(blank or NA\) at data row 2; .*'interpolate' or 'drop'"),
    ("a,b\n5,2\nNaN,3\n1,6\n", r"column 'a' has 1 missing value \(blank or NA\) at data row 2;"),
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
    (dict(skill_margin=1.0), "skill_margin must be a number below 1"),
    (dict(skill_margin=float("nan")), "skill_margin must be a number below 1"),
    (dict(missing="fill"), "missing must be one of refuse, interpolate, drop"),
    (dict(period=1), "period must be a whole number of rows >= 2"),
    (dict(period=2.5), "period must be a whole number of rows >= 2"),
    (dict(period=161), r"period 161 looks 161 rows back at delay 3, more than the training part's 160 rows"),
    (dict(columns=()), "columns must name at least one column"),
    (dict(columns=("a", "c")), r"CSV has no column 'c'; its numeric columns: a, b"),
    (dict(columns=("a", "a")), "columns names 'a' twice"),
])
def test_csv_config_ranges(tmp_path, changes, message):
    path, _ = _good_csv(tmp_path)
    cfg = TaskConfig(name="csv", csv_path=path, seq_len=20, delay=3, **changes)
    with pytest.raises(ValueError, match=message):
        validate_task(cfg)


# ------------------------------------------------------------ gaps: refused naming the rows, or handled


def test_a_gap_in_a_single_column_file_is_refused_naming_every_row(tmp_path):
    # blank lines inside the file are gaps (pandas would drop them silently); blank lines at the end are not
    path = _write(tmp_path, "x\n1\n2\n\n4\nNA\n6\n7\n\n9\n10\n\n\n")
    message = (r"CSV column 'x' has 3 missing values \(blank or NA\) at data rows 3, 5, 8; to use it, choose "
               r"missing 'interpolate' or 'drop' \(--missing\)")
    for _ in range(2):
        with pytest.raises(ValueError, match=message):
            load_series(path)
    assert series.describe(path).missing == {"x": 3} and series.describe(path).rows == 10


def test_many_gaps_are_named_as_ranges_then_counted():
    rows = [2, 3, 4, 9] + list(range(20, 40, 2)) + [50, 51, 52]
    assert series._rows_text(rows) == "data rows 3-5, 10, 21, 23, 25, 27, 29, 31 and 7 more"
    assert series._rows_text([0]) == "data row 1"


def test_interpolate_fills_inside_and_drops_the_ends(tmp_path):
    path = _write(tmp_path, "x\n\n2\n\n4\nNA\n6\n7\n\n9\n\n\n")
    assert load_series(path, missing="interpolate").view(-1).tolist() == [2, 3, 4, 5, 6, 7, 8, 9]
    cfg = TaskConfig(name="csv", csv_path=path, missing="interpolate")
    assert series.facts(cfg) == {"forecast_columns": "x", "missing_filled": 3, "missing_dropped": 1}  # 1: row 1
    two = _write(tmp_path, "a,b\n1,10\n,20\n3,\n4,40\n", "two.csv")
    torch.testing.assert_close(load_series(two, missing="interpolate"),
                               torch.tensor([[1, 10], [2, 20], [3, 30], [4, 40]], dtype=torch.float32))


def test_drop_removes_the_rows_with_a_gap_and_says_how_many(tmp_path):
    path = _write(tmp_path, "x\n1\n2\n\n4\nNA\n6\n7\n\n9\n10\n")
    assert load_series(path, missing="drop").view(-1).tolist() == [1, 2, 4, 6, 7, 9, 10]
    cfg = TaskConfig(name="csv", csv_path=path, missing="drop")
    assert series.facts(cfg) == {"forecast_columns": "x", "missing_filled": 0, "missing_dropped": 3}
    two = _write(tmp_path, "a,b\n1,10\n,20\n3,\n4,40\n", "two.csv")
    assert load_series(two, missing="drop").tolist() == [[1, 10], [4, 40]]
    assert load_series(two, columns="a", missing="drop").view(-1).tolist() == [1, 3, 4]   # only b's gap: kept
    with pytest.raises(ValueError, match="missing must be one of refuse, interpolate, drop"):
        load_series(path, missing="zero")


# ------------------------------------------------------------ columns: the index, the user's choice

def _dated(tmp_path, n=120):
    days = np.datetime64("1958-03-29") + 7 * np.arange(n)
    lines = ["date,x,y"] + [f"{d},{np.sin(i / 4):.5f},{i * 0.5 + np.cos(i):.5f}" for i, d in enumerate(days)]
    return _write(tmp_path, "\n".join(lines) + "\n", "dated.csv")


def test_a_date_column_first_is_the_index_and_not_forecast(tmp_path):
    path = _dated(tmp_path)
    info = series.describe(path)
    assert (info.index, info.index_kind, info.columns, info.not_numeric) == ("date", "dates", ("x", "y"), {})
    both = load_series(path)
    assert both.shape == (120, 2)
    assert torch.equal(load_series(path, columns=("y",)), both[:, 1:])
    assert torch.equal(load_series(path, columns="y,x"), both[:, [1, 0]])        # in the order chosen
    with pytest.raises(ValueError, match="CSV column 'date' holds dates/times: it is the file's index"):
        load_series(path, columns=("date", "x"))
    cfg = TaskConfig(name="csv", csv_path=path, columns=("y",), seq_len=10, delay=2)
    validate_task(cfg)
    assert task_dims(cfg) == (1, 1)


def test_a_monotone_integer_first_column_is_the_index_unless_named(tmp_path):
    path = _write(tmp_path, "year,v\n" + "\n".join(f"{1900 + i},{np.sin(i):.4f}" for i in range(50)) + "\n")
    info = series.describe(path)
    assert (info.index, info.index_kind, info.columns) == ("year", "integers", ("v",))
    assert load_series(path).shape == (50, 1)
    assert load_series(path, columns=("year", "v"))[:3, 0].tolist() == [1900, 1901, 1902]   # named: forecast
    # not an index: a single column, a column that does not increase, integers with a fraction
    alone = _write(tmp_path, "year\n1900\n1901\n1902\n", "alone.csv")
    assert series.describe(alone).index is None and load_series(alone).shape == (3, 1)
    down = _write(tmp_path, "n,v\n3,1\n2,5\n1,2\n", "down.csv")
    assert series.describe(down).index is None and load_series(down).shape == (3, 2)
    frac = _write(tmp_path, "t,v\n1.5,1\n2.5,5\n3.5,2\n", "frac.csv")
    assert series.describe(frac).index is None


def test_describe_lists_numeric_columns_and_why_the_others_are_not(tmp_path):
    path = _write(tmp_path, "date,x,note,y\n2020-01,1,a,\n2020-02,2,b,4\n2020-03,,c,5\n")
    info = series.describe(path)
    assert info.index == "date" and info.columns == ("x", "y") and info.missing == {"x": 1, "y": 1}
    assert info.not_numeric == {"note": "CSV column 'note', data row 1: 'a' is not a number"}
    with pytest.raises(ValueError, match="CSV column 'note', data row 1"):      # every column: refused whole
        load_series(path, missing="drop")
    assert load_series(path, columns=("x", "y"), missing="drop").tolist() == [[2, 4]]


def test_columns_given_any_way_are_one_tuple():
    assert TaskConfig(columns="a, b").columns == ("a", "b")
    assert TaskConfig(columns=["a", "b"]).columns == ("a", "b") == TaskConfig(columns=("a", "b")).columns
    assert TaskConfig().columns is None


# ------------------------------------------------------------ baselines, by hand

# rows 0..11; train = rows 0..5 (mean 14/3, variance 32/3), test = rows 6..11; T = 3, d = 1: test windows
# start at test rows 0, 1, 2 and score steps t = 1, 2, i.e. the targets at rows 8, 9 | 9, 10 | 10, 11
HAND = [5, 3, 8, 1, 9, 2, 7, 4, 6, 0, 10, 11]
TARGETS = [6, 0, 0, 10, 10, 11]
PERSISTENCE = [4, 6, 6, 0, 0, 10]   # rows 7, 8 | 8, 9 | 9, 10: one step before each target
SEASONAL = [2, 7, 7, 4, 4, 6]       # period 3: rows 5, 6 | 6, 7 | 7, 8, three steps before (row 5 is training data)


def _hand(tmp_path, **changes):
    path = _write(tmp_path, "v\n" + "\n".join(map(str, HAND)) + "\n", "hand.csv")
    return TaskConfig(name="csv", csv_path=path, seq_len=3, delay=1, test_fraction=0.5, **changes)


def _z(values):
    return (np.array(values, float) - 14 / 3) / np.sqrt(32 / 3)


def test_persistence_and_seasonal_persistence_by_hand(tmp_path):
    cfg = _hand(tmp_path, period=3)
    validate_task(cfg)
    assert series.test_starts(cfg, 64).tolist() == [0, 1, 2]
    forecasts = series.baseline_forecasts(cfg, 64)
    scored = {name: f[1:, :, 0].T.reshape(-1).numpy() for name, f in forecasts.items()}   # steps t >= d
    np.testing.assert_allclose(scored["persistence"], _z(PERSISTENCE), atol=1e-6)
    np.testing.assert_allclose(scored["seasonal"], _z(SEASONAL), atol=1e-6)
    batch = make_test_batch(cfg, [torch.Generator()] * 2, 64)                  # what the network is scored on
    np.testing.assert_allclose(batch.targets[1:, 0, :, 0].T.reshape(-1).numpy(), _z(TARGETS), atol=1e-6)
    assert torch.equal(batch.targets[:, 0], batch.targets[:, 1])               # every member: the same windows
    assert torch.equal(forecasts["persistence"], batch.inputs[:, 0])           # persistence: the last input seen
    # squared errors (raw): persistence 4+36+36+100+100+1 = 277, seasonal 16+49+49+36+36+25 = 211, over
    # 6 targets and the training variance 32/3: MSE 277/64 and 211/64; SST of the targets 773/6 (raw)
    scores = D.baseline_scores(cfg, 64)
    assert scores["persistence_mse"] == pytest.approx(277 / 64, rel=1e-6)
    assert scores["seasonal_mse"] == pytest.approx(211 / 64, rel=1e-6)
    assert scores["persistence_r2"] == pytest.approx(1 - 277 * 6 / 773, rel=1e-5)
    assert scores["seasonal_r2"] == pytest.approx(1 - 211 * 6 / 773, rel=1e-5)
    assert (scores["baseline"], scores["baseline_mse"], scores["baseline_r2"]) == (
        "seasonal", scores["seasonal_mse"], scores["seasonal_r2"])
    no_period = D.baseline_scores(_hand(tmp_path), 64)
    assert set(no_period) == {"persistence_mse", "persistence_r2", "baseline", "baseline_mse", "baseline_r2"}
    assert no_period["baseline"] == "persistence"


def test_seasonal_lag_is_the_nearest_season_at_least_d_back():
    assert [series.seasonal_lag(p, d) for p, d in [(3, 1), (3, 3), (52, 10), (5, 2), (3, 4), (2, 3), (4, 8)]] \
        == [3, 3, 52, 5, 6, 4, 8]


def test_few_scored_windows_are_evenly_spaced(tmp_path):
    path, _ = _good_csv(tmp_path)                      # 200 rows: test part 40, windows of 23: 18 starts
    cfg = TaskConfig(name="csv", csv_path=path, seq_len=20, delay=3)
    assert series.test_starts(cfg, 64).tolist() == list(range(18))
    assert series.test_starts(cfg, 4).tolist() == [0, 6, 11, 17]
    assert series.test_windows(cfg, 4).shape == (23, 4, 2)


def test_skill_and_the_success_rule():
    assert D.skill(torch.tensor([1.0, 2.0, 0.5]), 2.0).tolist() == [0.5, 0.0, 0.75]
    csv, bits = TaskConfig(name="csv", skill_margin=0.2), TaskConfig(name="xor")
    assert D.score_metric(csv, 0.9) == ("test_skill", 0.2) and D.score_metric(bits, 0.9) == ("test_acc", 0.9)
    # csv is judged at the final evaluation: a failed evaluation resets the convergence step
    step = None
    for at, passed, want in [(0, False, None), (10, True, 10), (20, True, 10), (30, False, None), (40, True, 40)]:
        step = D.convergence_step(csv, step, passed, at)
        assert step == want
    assert D.convergence_step(bits, 10, False, 30) == 10                      # bit tasks: the first, kept


def test_a_baseline_that_is_exact_on_the_test_part_is_refused(tmp_path):
    cycle = _write(tmp_path, "v\n" + "\n".join(str([0, 1, 3, 2][i % 4]) for i in range(80)) + "\n")
    validate_task(TaskConfig(name="csv", csv_path=cycle, seq_len=5, delay=1))
    with pytest.raises(ValueError, match="seasonal persistence with period 4 forecasts every test target exactly"):
        validate_task(TaskConfig(name="csv", csv_path=cycle, seq_len=5, delay=1, period=4))
    flat = _write(tmp_path, "v\n" + "\n".join(str(i if i < 60 else 7) for i in range(80)) + "\n", "flat.csv")
    with pytest.raises(ValueError, match=r"persistence \(the value 1 step back\) forecasts every test target"):
        validate_task(TaskConfig(name="csv", csv_path=flat, seq_len=5, delay=1))


# ------------------------------------------------------------ files that are not CSV tables (issue 16, item 4)
NOT_A_TABLE = [  # (bytes, the one line that refuses them)
    (bytes(range(256)) * 4, "this file is not a CSV table: it holds binary data, not text"),
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "this file is not a CSV table: it holds binary data (a PNG image), not text"),
    (b"%PDF-1.7\n" + bytes(64), "this file is not a CSV table: it holds binary data (a PDF document), not text"),
    ("a,b\n1,2\n3,4\n".encode("utf-16"), "this file is UTF-16 text, not UTF-8; save it as UTF-8 CSV"),
    ("a,b\n1,2\n3,4\n".encode("utf-16-be"), "this file is UTF-16 text, not UTF-8"),   # no byte-order mark
    ("a,b\n1,2\n3,é\n".encode("latin-1"), "this file is not UTF-8 text (byte 0xe9 on line 3: Latin-1"),
    (b"", "CSV file is empty"),
    (b"1,2\n3,4\n", "CSV has no header row: the first line '1,2' holds numbers, not column names"),
    (b"a;b\n1;2\n3;4\n", "CSV columns are separated by semicolons, not commas"),
    (b"a\tb\n1\t2\n3\t4\n", "CSV columns are separated by tabs, not commas"),
    (b'a,b\n1,2\n"3,4\n', 'could not parse the CSV file as a table: a quote (") opens a cell on line 3 and never'),
]


@pytest.mark.parametrize("data,message", NOT_A_TABLE)
def test_a_file_that_is_not_a_table_is_refused_in_a_users_words(tmp_path, data, message):
    path = tmp_path / "secret_server_folder" / "s.csv"
    path.parent.mkdir()
    path.write_bytes(data)
    for read in (series.describe, load_series,
                 lambda p: validate_task(TaskConfig(name="csv", csv_path=p, seq_len=2, delay=1))):
        with pytest.raises(ValueError) as e:
            read(str(path))
        text = str(e.value)
        assert text.startswith(message), text
        assert "secret_server_folder" not in text and "codec" not in text and "C error" not in text
        assert "\n" not in text


def test_a_utf8_file_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("\ufeffa,b\n1,2\n3,5\n4,3\n".encode())
    assert series.describe(str(path)).columns == ("b",)        # 'a' (1, 3, 4) is the index, its name unmangled


def test_too_few_rows_names_the_sequence_and_the_delay_not_a_field(tmp_path):
    path, _ = _good_csv(tmp_path, n=60)
    with pytest.raises(ValueError, match=r"each part needs a sequence of 40 steps plus the delay 5 = 45 rows.*a "
                                         r"longer series, or a shorter delay"):
        validate_task(TaskConfig(name="csv", csv_path=path, seq_len=40, delay=5))
