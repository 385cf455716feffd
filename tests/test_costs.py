"""Tests for floss_core.costs: the cost model against closed forms (a constant table, a linear cost law),
freshness and missing parts, the store keeping the table, a real measurement of a few points, and the
idle worker measuring the table part by part."""
import math

import pytest

from floss_core import costs
from floss_core.runner.worker import _CostTable
from floss_core.store import Store


def synthetic_table(seconds, arch: str = "rnn", variant_factor: float = 2.0) -> dict:
    """A table whose every measured point of primitive ``op`` took ``seconds(op, point)``; its variants
    ``variant_factor`` times that."""
    parts = {f"{arch}/{op}/{n}": [dict(p, arch=arch, t=seconds(op, p)) for p in costs.points(arch, op, n)]
             for op in costs.OPS for n in costs.HIDDEN}
    parts[f"{arch}/variants"] = [dict(p, arch=arch, t=variant_factor * seconds(op, p))
                                 for op, p in costs._variant_points(arch)]
    parts[f"{arch}/warmup"] = {"seconds": 0.0}
    return {"machine": {"cores": 2}, "parts": parts}


def fresh_synthetic_table(seconds=lambda op, p: 1e-3, arch: str = "rnn") -> dict:
    """``synthetic_table`` as if measured on this machine now, with its machine's part (one process)."""
    table = synthetic_table(seconds, arch)
    table["parts"]["machine"] = {"workers": 1, "start": 0.0, "parallel": {"1": 1.0}, "overhead": 0.1}
    return dict(costs.new_table(), parts=table["parts"], updated="2026-01-01T00:00:00+00:00")


def test_a_constant_table_gives_its_constants_at_any_size_and_variants_their_ratio():
    table = synthetic_table(lambda op, p: {"train": 1e-3, "eval": 2e-3, "exponents": 3e-3, "floss": 4e-3,
                                           "snapshot": 5e-3}[op])
    m = costs.CostModel(table)
    assert m.seconds("rnn", "train", E=7, N=50, B=3, T=1234) == pytest.approx(1e-3, rel=1e-6)
    assert m.seconds("rnn", "eval", E=2, N=9, B=64, T=40, L=77, k=8) == pytest.approx(2e-3, rel=1e-6)
    assert m.seconds("rnn", "snapshot", E=100, N=300, k=75, L=1000) == pytest.approx(5e-3, rel=1e-6)
    sizes = dict(E=9, N=80, k=75, L=55, b=1)
    assert m.seconds("rnn", "floss", "truncated/fused", **sizes) == pytest.approx(4e-3, rel=1e-6)
    assert m.seconds("rnn", "floss", "full/fused", **sizes) == pytest.approx(8e-3, rel=1e-6)
    # never measured as such: the family's factor times the QR path's
    assert m.seconds("rnn", "floss", "full/generic", **sizes) == pytest.approx(16e-3, rel=1e-6)
    assert m.seconds("rnn", "snapshot", "float32", E=1, N=8, k=4, L=30) == pytest.approx(10e-3, rel=1e-6)
    with pytest.raises(KeyError, match="gru"):
        m.seconds("gru", "train", E=1, N=8, B=16, T=30)


def test_a_linear_cost_law_is_recovered_between_and_beyond_the_measured_sizes():
    # one training step: 0.2 ms per call + 1 µs per time step and network + 2 ns per element of its products
    law = lambda p: 2e-4 + 1e-6 * p["T"] * p["E"] + 2e-9 * p["T"] * p["E"] * p["B"] * p["N"] ** 2
    m = costs.CostModel(synthetic_table(lambda op, p: law(p) if op == "train" else 1e-3))
    for sizes in (dict(E=9, N=80, B=16, T=300), dict(E=3, N=20, B=16, T=60), dict(E=64, N=128, B=32, T=1000)):
        assert m.seconds("rnn", "train", **sizes) == pytest.approx(law(sizes), rel=1e-4)


def test_the_parallel_part_interpolates_between_one_process_and_the_measured_count():
    table = synthetic_table(lambda op, p: 1e-3)
    table["machine"]["cores"] = 4
    table["parts"]["machine"] = {"workers": 4, "start": 2.0, "parallel": {"1": 1.0, "4": 1.6}, "overhead": 0.3}
    m = costs.CostModel(table)
    assert m.slowdown(1) == 1.0 and m.slowdown(4) == pytest.approx(1.6) and m.slowdown(2) == pytest.approx(1.2)
    assert m.slowdown(8) == pytest.approx(3.2)                # twice the cores: twice as slow again
    assert m.start_seconds(1) == 0 and m.start_seconds(4) == 2.0 and m.start_seconds(8) == 4.0
    assert m.overhead() == 0.3 and m.warmup("rnn") == 0.0 and m.warmup("gru") == 0.0


def test_fresh_says_whether_a_table_describes_this_machine(monkeypatch):
    assert not costs.fresh(None) and not costs.fresh({})
    table = costs.new_table()
    assert costs.fresh(table) and table["machine"]["cores"] >= 1 and table["machine"]["device"] == "cpu"
    assert not costs.fresh(table, "cuda")
    monkeypatch.setenv("FLOSS_THREADS", "2")           # measured on one thread: not this configuration's
    assert not costs.fresh(table)
    monkeypatch.delenv("FLOSS_THREADS")
    assert costs.fresh(table)
    old = dict(table, machine=dict(table["machine"], floss_core="0.0.1"))
    assert not costs.fresh(old)


def test_parts_and_what_an_estimate_still_lacks():
    everything = costs.parts()
    assert everything[: len(costs.arch_parts("rnn"))] == costs.arch_parts("rnn")   # the default network first
    assert everything[len(costs.arch_parts("rnn"))] == "machine" and len(everything) == len(set(everything))
    assert {"gru/warmup", "lstm/variants", "rnn/snapshot/80"} <= set(everything)
    table = {"parts": {p: [] for p in costs.arch_parts("rnn")}}
    assert costs.needed_parts(table, "rnn") == ["machine"]
    assert costs.needed_parts(table, "gru") == costs.arch_parts("gru") + ["machine"]
    assert costs.needed_parts(None, "rnn") == costs.arch_parts("rnn") + ["machine"]


def test_the_store_keeps_a_table_per_device_without_changing_experiment_data(tmp_path):
    with Store(tmp_path / "floss.db") as store:
        assert store.cost_table() is None
        before = store.last_change()
        table = {"machine": {"cores": 2}, "parts": {"machine": {"start": 1.5, "x": math.nan}}}
        store.save_cost_table(table)
        store.save_cost_table({"parts": {}}, "cuda")
        assert store.last_change() == before                  # no page's cached results go stale
        got = store.cost_table()
        assert got["parts"]["machine"]["start"] == 1.5 and math.isnan(got["parts"]["machine"]["x"])
        assert store.cost_table("cuda") == {"parts": {}}
        table["parts"]["machine"]["start"] = 2.5
        store.save_cost_table(table)
    with Store(tmp_path / "floss.db") as store:
        assert store.cost_table()["parts"]["machine"]["start"] == 2.5


def test_a_measured_part_times_the_loops_own_steps_and_more_work_takes_longer():
    table = costs.new_table()
    costs.measure_part(table, "rnn/train/8", ensemble=(1, 4))
    pts = {(p["E"], p["T"]): p["t"] for p in table["parts"]["rnn/train/8"]}
    assert set(pts) == {(1, 30), (1, 300), (1, 100), (4, 30), (4, 300), (4, 100)} and all(t > 0 for t in pts.values())
    assert pts[(4, 300)] > pts[(4, 30)] and pts[(1, 300)] > pts[(1, 30)]    # ten times the steps
    assert table["seconds_measuring"] > 0 and table["updated"]
    costs.measure_part(table, "machine", workers=1)           # one process: no pool to start
    machine = table["parts"]["machine"]
    assert machine["workers"] == 1 and machine["start"] == 0 and 0 < machine["overhead"] < 30


@pytest.mark.slow
def test_the_machine_part_starts_worker_processes_and_times_them_side_by_side():
    machine = costs.measure_part(costs.new_table(), "machine", workers=2)["parts"]["machine"]
    assert machine["workers"] == 2 and 0 < machine["start"] < 120 and machine["parallel"]["2"] >= 1.0
    warm = costs.measure_part(costs.new_table(), "rnn/warmup")["parts"]["rnn/warmup"]["seconds"]
    assert 0 <= warm < 60


def test_an_idle_worker_measures_the_table_part_by_part_and_keeps_it(tmp_path, monkeypatch):
    measured = []

    def fake_measure(table, part, *, device="cpu", workers=None):
        measured.append(part)
        table["parts"][part] = [{"t": 1.0}]
        table["updated"] = f"after {part}"
        return table

    monkeypatch.setattr(costs, "parts", lambda archs=None: ["rnn/train/8", "machine"])
    monkeypatch.setattr(costs, "measure_part", fake_measure)
    with Store(tmp_path / "floss.db") as store:
        stale = costs.new_table()
        stale["machine"]["floss_core"] = "0.0.1"          # another version's numbers: measured anew
        stale["parts"]["rnn/train/8"] = [{"t": 99.0}]
        store.save_cost_table(stale)
        worker = _CostTable(store, 2)
        assert worker.measure_next() and store.cost_table()["parts"] == {"rnn/train/8": [{"t": 1.0}]}
        assert costs.fresh(store.cost_table())
        assert worker.measure_next() and set(store.cost_table()["parts"]) == {"rnn/train/8", "machine"}
        assert not worker.measure_next() and not worker.measure_next()       # complete: nothing more
        assert measured == ["rnn/train/8", "machine"]


def test_a_worker_whose_measuring_fails_stops_measuring_and_keeps_serving(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(costs, "measure_part", broken)
    with Store(tmp_path / "floss.db") as store:
        worker = _CostTable(store, 1)
        assert not worker.measure_next() and not worker.measure_next()
        assert store.cost_table() is None
    assert "measuring stopped: RuntimeError: no such kernel" in caplog.text
