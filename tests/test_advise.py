"""The schedule adviser's search (issue 19): its configuration, search space, successive halving, the store's
advice tables and their migration, the ``advise`` command end to end on tiny sizes, and the recommendation's
numbers against the stored runs. What training outcomes come out is not asserted (tiny networks are
chaotic); the bookkeeping, the ranges and the equalities with the store are."""
import json
import math
import sqlite3
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from floss_core import advice as A
from floss_core import advise as AD
from floss_core.demo import SIZES
from floss_core.experiment import make_spec, spec_to_dict, validate_spec
from floss_core.options import command_options
from floss_core.store import MIGRATIONS, SCHEMA_VERSION, Store, _statements

ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(**over):
    options = {**SIZES["tiny"][1], "delays": [4], "seeds": 3, "diagnostics": False, **over}
    return make_spec("quick", **options)


def tiny_args(spec) -> list[str]:
    """The command-line options that rebuild ``spec`` (its --schedules left out: advise refuses it)."""
    return [a for option in command_options(spec_to_dict(spec)) if option[0] != "--schedules" for a in option]


def same(a, b) -> bool:
    """Equal, NaN equal to NaN (a number no solved run gave)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "floss_core", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


# ------------------------------------------------------------------------------------ configuration
@pytest.mark.parametrize("bad, words", [
    (dict(trials=0), "trials must be an integer >= 1"),
    (dict(target=0.0), "target must be a success rate in (0, 1]"),
    (dict(target=1.5), "target must be a success rate in (0, 1]"),
    (dict(rung_seeds=0), "rung_seeds must be an integer >= 1"),
    (dict(sampler="grid"), "unknown sampler 'grid'; choose one of tpe, nsga2"),
    (dict(schedules=("none",)), "choose from pre, inter, pre+inter, adaptive, joint"),
    (dict(schedules=()), "schedules must name at least one of"),
    (dict(knobs=("k", "lr")), "unknown knob 'lr'; choose from schedule,"),
])
def test_a_bad_configuration_is_one_line_naming_the_valid_values(bad, words):
    with pytest.raises(ValueError) as e:
        AD.validate_config(AD.AdviseConfig(**bad))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_rung_seeds_beyond_the_seeds_are_refused_and_the_default_is_a_third():
    with pytest.raises(ValueError, match=r"rung_seeds must be in 1\.\.3"):
        AD.advice_config(tiny_spec(), AD.AdviseConfig(rung_seeds=4))
    assert [AD.rung_size(AD.AdviseConfig(), n) for n in (1, 2, 3, 9, 10)] == [1, 1, 1, 3, 4]
    assert AD.rung_size(AD.AdviseConfig(rung_seeds=2), 9) == 2
    cfg = AD.AdviseConfig(trials=3, schedules=("pre", "joint"), knobs=("k", "schedule"))
    assert AD.config_from_dict(json.loads(json.dumps(asdict(cfg)))) == cfg


# ------------------------------------------------------------------------------------ the search space
@pytest.mark.parametrize("size", ["tiny", "quick"])
def test_sampled_candidates_stay_in_their_ranges_and_are_valid_schedules(size):
    import optuna
    from floss_core.configs import validate_floss
    from floss_core.models import state_dim

    spec = tiny_spec() if size == "tiny" else make_spec("quick", seeds=3)
    cfg = AD.AdviseConfig()
    space = AD.search_space(spec, cfg)
    base, fl = AD.base_schedule(spec), spec.floss
    assert set(space) == {"schedule", "pre_steps", "inter_steps", "inter_at", "threshold", "adaptive_every",
                          "adaptive_steps", "weight", "joint_every", "k", "window", "qr_every"}
    # ranges scale from the base spec: a tiny spec's search stays tiny
    assert space["pre_steps"].high == 2 * base.pre_steps and space["pre_steps"].low >= 1
    assert space["k"].high == fl.k <= state_dim(spec.model) and space["window"].high == fl.seq_len
    assert space["window"].low > fl.transient and set(space["qr_every"].choices) == {1, 2, 5}
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(60):
        params = AD.sample(study.ask(), space, spec, cfg)
        for name, value in params.items():
            assert AD._within(space[name], value), (name, value)
        schedule, floss = AD.candidate(params, spec, cfg)
        seen.add(schedule.name)
        assert schedule.name in AD.FLOSSING
        # only the knobs of its own schedule were asked
        assert all(AD._uses(schedule.name, p) for p in params if p != "schedule")
        assert 1 <= floss["k"] <= fl.k and fl.transient < floss["seq_len"] <= fl.seq_len
        assert floss["qr_every"] in (1, 2, 5)
        assert schedule.adaptive_k <= floss["k"] and all(0 <= t < spec.train.steps for t in schedule.inter_at)
        if schedule.name == "adaptive":
            assert schedule.every % spec.train.eval_every == 0
        validate_floss(replace(fl, **floss), state_dim(spec.model))
        validate_spec(replace(spec, schedules=(schedule,), floss=replace(fl, **floss)))
        assert AD.label(schedule, floss).startswith(schedule.name.split("+")[0])
    assert seen == set(AD.FLOSSING)


def test_the_base_specs_own_schedule_is_the_first_candidate_and_unsearched_knobs_keep_their_values():
    spec = tiny_spec()
    cfg = AD.AdviseConfig()
    space = AD.search_space(spec, cfg)
    first = AD.default_params(spec, cfg, space)
    assert first == {"schedule": "pre", "pre_steps": spec.schedules[1].pre_steps, "k": spec.floss.k,
                     "window": spec.floss.seq_len, "qr_every": spec.floss.qr_every}
    schedule, floss = AD.candidate(first, spec, cfg)
    assert schedule == spec.schedules[1] and replace(spec.floss, **floss) == spec.floss
    only = AD.AdviseConfig(schedules=("joint",), knobs=("weight",))
    assert set(AD.search_space(spec, only)) == {"weight"}
    schedule, floss = AD.candidate({"weight": 0.5}, spec, only)
    assert schedule.name == "joint" and schedule.weight == 0.5 and floss == {}


def test_every_searched_schedule_is_tried_at_its_defaults_before_the_sampler_proposes():
    # the base's own schedule first, then each other searched schedule at the base's values, once each
    spec = tiny_spec()
    cfg = AD.AdviseConfig()
    space = AD.search_space(spec, cfg)
    starts = AD.starting_points(spec, cfg, space)
    assert starts[0] == AD.default_params(spec, cfg, space)
    assert [p["schedule"] for p in starts] == ["pre"] + [n for n in AD.FLOSSING if n != "pre"]
    for p in starts:
        schedule, _ = AD.candidate(p, spec, cfg)
        assert schedule == replace(spec.schedules[1], name=p["schedule"])   # the preset's values, that schedule
    only = AD.AdviseConfig(schedules=("adaptive", "joint"))
    assert [p["schedule"] for p in AD.starting_points(spec, only, AD.search_space(spec, only))] == ["adaptive", "joint"]
    fixed = AD.AdviseConfig(knobs=("pre_steps",))          # the schedule not searched: only the base's
    assert len(AD.starting_points(spec, fixed, AD.search_space(spec, fixed))) == 1


# ------------------------------------------------------------------------------------ successive halving
def _partial(successes, n, compute=1.0):
    return {"successes": successes, "n": n, "compute_seconds": compute}


def test_a_candidate_that_cannot_reach_the_target_stops_after_the_first_rung():
    # 0 of 3 solved out of 9: at best 6 of 9 = 67 % < 80 %
    assert "cannot reach the target" in AD.stops_after_rung(_partial(0, 3), 9, 0.8, [])
    # 1 of 3: at best 7 of 9 = 78 % < 80 %; 2 of 3: 8 of 9 = 89 %, goes on
    assert AD.stops_after_rung(_partial(1, 3), 9, 0.8, []) is not None
    assert AD.stops_after_rung(_partial(2, 3), 9, 0.8, []) is None
    # exactly reachable: 0 of 1 out of 5 at target 0.8 is 4 of 5
    assert AD.stops_after_rung(_partial(0, 1), 5, 0.8, []) is None
    # a trial that ran every seed already never stops
    assert AD.stops_after_rung(_partial(0, 9), 9, 0.8, []) is None


def test_a_candidate_dominated_already_stops_after_the_first_rung():
    # 3 of 3 first-rung runs solved (steps 200, 300, 400), one run left: at best 4 of 4, and the best
    # conceivable time to solution is the median of 0 (the last run solving at once), 200, 300, 400 = 250
    fast_perfect = {"trial": 0, "label": "no flossing", "success_rate": 1.0, "compute_seconds": 0.5,
                    "median_convergence": 100.0}
    steps = [200, 300, 400]
    why = AD.stops_after_rung(_partial(3, 3, compute=1.0), 4, 0.5, [fast_perfect], solved_steps=steps)
    assert why and "dominated by trial 0" in why
    # not dominated when it is cheaper, could be more successful, or could solve sooner
    assert AD.stops_after_rung(_partial(3, 3, compute=0.1), 4, 0.5, [fast_perfect], solved_steps=steps) is None
    worse = {**fast_perfect, "success_rate": 0.5}
    assert AD.stops_after_rung(_partial(3, 3, compute=1.0), 4, 0.5, [worse], solved_steps=steps) is None
    slower = {**fast_perfect, "median_convergence": 260.0}
    assert AD.stops_after_rung(_partial(3, 3, compute=1.0), 4, 0.5, [slower], solved_steps=steps) is None
    unsolved_time = {**fast_perfect, "median_convergence": math.nan}   # no time to solution: the worst
    assert AD.stops_after_rung(_partial(3, 3, compute=1.0), 4, 0.5, [unsolved_time], solved_steps=steps) is None
    # six runs left of nine: they might all solve at step 0, so the best case's median is 0 and no
    # complete trial (whose runs solve at some evaluation after training) is sooner
    assert AD.stops_after_rung(_partial(2, 3, compute=1.0), 9, 0.5, [fast_perfect], solved_steps=[200, 300]) is None


def test_the_search_tells_the_sampler_success_time_to_solution_and_compute():
    spec = tiny_spec()
    solved = {"success_rate": 0.5, "compute_seconds": 1.5, "median_convergence": 40.0}
    assert AD.objectives(solved, spec) == [0.5, 40.0, 1.5]
    nothing = {"success_rate": 0.0, "compute_seconds": 1.0, "median_convergence": math.nan}
    assert AD.objectives(nothing, spec) == [0.0, spec.train.steps + 1, 1.0]   # finite, worse than any solve
    assert AD.DIRECTIONS == ("maximize", "minimize", "minimize")


def test_a_candidate_that_goes_on_runs_the_remaining_seeds_as_a_second_experiment(tmp_path):
    from floss_core import runner

    spec, cfg = tiny_spec(), AD.AdviseConfig(trials=1, target=0.01)
    with Store(tmp_path / "s.db") as s:
        advice_id = s.create_advice(AD.advice_config(spec, cfg), "direct")
        run = AD._Runner(s, advice_id, "local", None, 1, "test-worker")
        run.spec = spec
        # target 1 %: even 0 of 1 first-rung runs leaves 2 of 3 possible, and no complete trial to dominate it
        trial = run.evaluate(1, spec.schedules[1], {"k": 2}, {"k": 2}, rung=1, target=0.01, complete=[])
        assert trial["complete"] and trial["seeds"] == [0, 1, 2] and len(trial["experiment_ids"]) == 2
        assert trial["experiment_id"] == trial["experiment_ids"][0] and "stopped" not in trial
        first, rest = (runner.stored_records(s, e) for e in trial["experiment_ids"])
        assert [r["seed"] for r in first] == [0] and sorted(r["seed"] for r in rest) == [1, 2]
        assert all(r["config"]["floss"]["k"] == 2 for r in first + rest)
        assert {k: trial[k] for k in A.trial_numbers(first + rest)} == pytest.approx(
            A.trial_numbers(first + rest), nan_ok=True)
        assert [s.experiment(e)["name"][-6:] for e in trial["experiment_ids"]] == ["rung 1", "rung 2"]


def test_trial_numbers_count_diverged_and_missing_runs_as_failures():
    records = [{"success": True, "convergence_step": 10, "train_seconds": 1.0, "floss_seconds": 0.5, "status": "done"},
               {"success": True, "convergence_step": 30, "train_seconds": 1.0, "floss_seconds": 0.5, "status": "done"},
               {"success": False, "convergence_step": None, "train_seconds": 0.4, "floss_seconds": 0.2,
                "status": "diverged"}]
    t = A.trial_numbers(records, planned=4)    # one planned run left no record (its job failed)
    assert (t["n"], t["successes"], t["success_rate"]) == (4, 2, 0.5)
    assert t["compute_seconds"] == pytest.approx((1.5 + 1.5 + 0.6) / 3)
    assert t["median_convergence"] == 20.0 and math.isnan(A.trial_numbers(records[2:])["median_convergence"])
    from floss_core.stats import wilson_interval
    assert (t["ci_low"], t["ci_high"]) == wilson_interval(2, 4)


# ------------------------------------------------------------------------------------ the store
def test_a_version_4_store_is_migrated_to_5_keeping_its_rows(tmp_path):
    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for version in range(1, 5):
        for statement in _statements(MIGRATIONS[version]):
            conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '4'), ('store_id', 'abc')")
    conn.execute("INSERT INTO experiments (name, config_json, created_at, updated_at) VALUES ('old', '{}', 1, 1)")
    conn.close()
    assert SCHEMA_VERSION == 5
    with Store(path, create=False) as s:
        assert s.integrity_check() == "ok" and s.last_change()[0] == "abc"
        assert list(s.experiments()["name"]) == ["old"] and s.advice_list().empty
        advice_id = s.create_advice({"advise": {"trials": 2}}, "old store's first advice")
        assert s.advice(advice_id)["trials_total"] == 3
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "5"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"advice", "advice_trials"} <= tables


def _trial(number, name="pre", **over):
    return {"trial": number, "label": f"{name} {number}", "schedule": {"name": name, "pre_steps": 5},
            "floss": {"k": 2}, "seeds": [0, 1, 2], "complete": True, "n": 3, "successes": 1,
            **{k: v for k, v in A.trial_numbers([], planned=0).items() if k not in ("n", "successes")},
            "success_rate": 1 / 3, "ci_low": 0.06, "ci_high": 0.79, "compute_seconds": 0.25,
            "experiment_id": None, "params": {"k": 2}, "stopped": None, **over}


def test_advice_rows_and_trials_round_trip(tmp_path):
    with Store(tmp_path / "s.db") as s:
        queued = s.queue_advice({"spec": {}, "advise": {"trials": 1}}, "queued one")
        running = s.create_advice({"spec": {}, "advise": {"trials": 1}}, "here")
        assert s.advice(queued)["status"] == "queued" and s.advice(running)["status"] == "running"
        s.save_advice_trial(running, _trial(0, "none"))
        s.save_advice_trial(running, _trial(1, experiment_ids=[7, 8]))
        s.save_advice_trial(running, _trial(1, successes=2, experiment_ids=[7, 8]))   # replaced, not duplicated
        trials = s.advice_trials(running)
        assert [t["trial"] for t in trials] == [0, 1] and trials[1]["successes"] == 2
        assert math.isnan(trials[1]["median_convergence"]) and trials[1]["experiment_ids"] == [7, 8]
        assert trials[1]["schedule"] == {"name": "pre", "pre_steps": 5} and trials[1]["params"] == {"k": 2}
        assert s.advice(running)["trials_done"] == 2
        rec = A.recommend(trials, 0.3)
        s.finish_advice(running, "done", rec)
        row = s.advice(running)
        assert row["status"] == "done" and row["result"]["statement"] == rec["statement"]
        df = s.advice_list()
        assert list(df["id"]) == [queued, running] and df["statement"].iloc[1] == rec["statement"]
        # the queue: a worker claims the queued one; a cancel of a queued one is at once
        assert s.claim_next_advice("w") == queued and s.claim_next_advice("w") is None
        other = s.queue_advice({"spec": {}}, "to cancel")
        assert s.request_cancel_advice(other) == "cancelled" and s.claim_next_advice("w") is None
        # a running one asks the experiment its trial trains to stop
        eid = s.add_experiment({"x": 1}, name="trial", status="running", worker_id="w")
        s.set_advice_progress(queued, experiment_id=eid)
        assert s.request_cancel_advice(queued) == "running"
        assert s.cancel_requested(eid) and s.advice_cancel_requested(queued)
        # its worker is gone: back to the queue? no, a cancel was pending: cancelled
        assert s.requeue_stale_advice(max_age_s=0.0) == [] and s.advice(queued)["status"] == "cancelled"
        # a search held by a worker that died goes back to the queue; one no worker holds yet stays
        held = s.create_advice({"spec": {}}, "held")
        assert s.hold_advice(held, "gone-worker") == "running" and s.hold_advice(queued, "w") == "cancelled"
        s.heartbeat("gone-worker", 2 ** 22 + 12345)   # a pid that does not exist here: dead at once
        assert s.requeue_stale_advice(max_age_s=60) == [held] and s.advice(held)["status"] == "queued"
        assert s.advice(running)["status"] == "done" and s.advice(held)["attempts"] == 1
        fresh = s.create_advice({"spec": {}}, "not held yet")
        assert s.requeue_stale_advice(max_age_s=0.0) == [] and s.advice(fresh)["status"] == "running"
        with pytest.raises(KeyError):
            s.advice(999)


def test_the_store_modules_load_no_torch_or_optuna():
    code = ("import sys, floss_core.store, floss_core.advice, floss_core.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'optuna')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One small search through the command line (3 seeds, rung 1, 3 candidates + no flossing)."""
    path = tmp_path_factory.mktemp("advise") / "floss.db"
    spec = tiny_spec()
    r = cli("advise", *tiny_args(spec), "--trials", "3", "--target", "0.6", "--store", str(path), "--workers", "1",
            "--sampler-seed", "1", "--json")
    assert r.returncode == 0, r.stderr
    return path, spec, json.loads(r.stdout)


def test_advise_runs_end_to_end_and_stores_every_trial(searched):
    path, spec, out = searched
    with Store(path, create=False) as s:
        row = s.advice(out["advice_id"])
        trials = s.advice_trials(out["advice_id"])
        experiments = s.experiments()
    assert row["status"] == "done" and row["trials_done"] == row["trials_total"] == 4 == len(trials)
    from floss_core.experiment import spec_from_dict
    assert spec_from_dict(row["config"]["spec"]) == spec and row["config"]["advise"]["trials"] == 3
    assert row["config"]["versions"]["optuna"] == "5.0.0"
    assert [t["trial"] for t in trials] == [0, 1, 2, 3] and trials[0]["label"] == "no flossing"
    assert trials[0]["complete"] and trials[0]["schedule"]["name"] == "none"
    assert trials[1]["params"] == AD.default_params(spec, AD.AdviseConfig(), AD.search_space(spec, AD.AdviseConfig()))
    assert all(t["schedule"]["name"] in AD.FLOSSING for t in trials[1:])
    # every experiment is a normal one of one schedule, named after its search and trial
    names = list(experiments["name"])
    assert all(n.startswith(f"advise {out['advice_id']} · trial ") for n in names)
    assert set(experiments["status"]) == {"done"}
    # the JSON output is the stored result
    assert out["recommendation"]["statement"] == row["result"]["statement"] and out["status"] == "done"
    assert [t["trial"] for t in out["trials"]] == [0, 1, 2, 3]


def test_every_candidate_runs_the_same_seeds(searched):
    path, spec, out = searched
    with Store(path, create=False) as s:
        for t in s.advice_trials(out["advice_id"]):
            assert t["seeds"] == list(spec.seeds)[:len(t["seeds"])]        # a prefix of the search's seeds
            assert t["complete"] == (t["seeds"] == list(spec.seeds))
            if t["trial"] > 0:
                assert len(t["seeds"]) in (1, 3)                            # the rung (a third), or all
            ran = []
            for eid in t["experiment_ids"]:
                runs = s.runs(eid)
                assert set(runs["schedule"]) == {t["schedule"]["name"]} and set(runs["delay"]) == set(spec.delays)
                ran += sorted(int(x) for x in runs["seed"].unique())
            assert ran == t["seeds"]


def test_the_halving_stopped_exactly_the_candidates_its_rule_stops(searched):
    from floss_core import runner

    path, spec, out = searched
    with Store(path, create=False) as s:
        trials = s.advice_trials(out["advice_id"])
        for t in trials[1:]:
            first = A.trial_numbers(runner.stored_records(s, t["experiment_ids"][0]), planned=1)
            before = [o for o in trials if o["trial"] < t["trial"] and o["complete"]]
            why = AD.stops_after_rung(first, len(spec.seeds), 0.6, before)
            assert (why is not None) == (not t["complete"]) == (len(t["experiment_ids"]) == 1)
            assert t.get("stopped") == why


def test_the_recommendations_numbers_match_the_stored_runs(searched):
    from floss_core import runner

    path, spec, out = searched
    with Store(path, create=False) as s:
        trials = s.advice_trials(out["advice_id"])
        result = s.advice(out["advice_id"])["result"]
        for t in trials:   # recomputed by hand from the runs the store holds
            records = [r for eid in t["experiment_ids"] for r in runner.stored_records(s, eid)]
            assert len(records) == t["n"] == len(t["seeds"]) * len(spec.delays)
            wins = sum(r["success"] for r in records)
            compute = sum(r["train_seconds"] + r["floss_seconds"] for r in records) / len(records)
            assert t["successes"] == wins and t["success_rate"] == pytest.approx(wins / len(records))
            assert t["compute_seconds"] == pytest.approx(compute, rel=1e-12)
    again = A.recommend(trials, 0.6)
    assert result["statement"] == again["statement"] and result["status"] == again["status"]
    assert result["front_trials"] == [t["trial"] for t in again["front"]]
    by_number = {t["trial"]: t for t in trials}
    choice = result["choice"]
    assert choice is not None and result["choice_trial"] == choice["trial"]
    stored = by_number[choice["trial"]]
    for key in ("success_rate", "ci_low", "ci_high", "compute_seconds", "successes", "n"):
        assert choice[key] == pytest.approx(stored[key]), key
    base = by_number[0]
    assert result["extra_compute_seconds"] == pytest.approx(choice["compute_seconds"] - base["compute_seconds"])
    assert f"{choice['successes']} of {choice['n']} seeds" in result["statement"]


def test_the_report_is_exported_from_the_command_line(searched, tmp_path):
    path, _, out = searched
    r = cli("advise", "--report", str(out["advice_id"]), "--store", str(path), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    written = Path(r.stdout.strip())
    assert written.parent == tmp_path and written.suffix == ".html"
    page = written.read_text()
    with Store(path, create=False) as s:
        statement = s.advice(out["advice_id"])["result"]["statement"]
    import html
    assert html.escape(statement, quote=False) in page or html.escape(statement) in page   # the stored verdict
    assert page.count('class="plotly-graph-div"') == 2
    # a search that is not there, and a directory that is not there: one line, exit 2, nothing written
    for args, words in ((["--report", "99"], "no advice 99"),
                        (["--report", str(out["advice_id"]), "--out", str(tmp_path / "no" / "such.html")],
                         "cannot write")):
        r = cli("advise", *args, "--store", str(path))
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [written.name]


def test_status_lists_the_searches_with_their_verdicts(searched):
    path, _, out = searched
    r = cli("status", "--store", str(path), "--json")
    assert r.returncode == 0, r.stderr
    (search,) = json.loads(r.stdout)["searches"]
    with Store(path, create=False) as s:
        row = s.advice(out["advice_id"])
    result = row["result"]
    assert (search["id"], search["status"], search["trials_done"], search["trials_total"]) == \
        (out["advice_id"], "done", 4, 4)
    assert search["statement"] == result["statement"]
    assert search["verdict"].startswith({"recommended": "recommended", "no_flossing": "no flossing",
                                         "none_reaches": "nothing reaches"}[result["status"]])
    human = cli("status", "--store", str(path))
    assert human.returncode == 0 and "schedule searches" in human.stdout and "4 / 4" in human.stdout


def test_the_human_output_prints_the_trials_the_front_and_the_statement(tmp_path):
    spec = tiny_spec(seeds=2)
    r = cli("advise", *tiny_args(spec), "--trials", "1", "--target", "1", "--rung-seeds", "2",
            "--store", str(tmp_path / "s.db"), "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert "Pareto front" in r.stdout and "no flossing" in r.stdout and "train+floss s/run" in r.stdout
    with Store(tmp_path / "s.db", create=False) as s:
        statement = s.advice_list()["statement"].iloc[0]
        assert all(t["complete"] for t in s.advice_trials(1))   # rung = every seed: no halving
    assert r.stdout.rstrip().endswith(statement)
    assert "trial 0 (1 of 2 done): no flossing" in r.stderr and "trial 1 (2 of 2 done): pre " in r.stderr   # progress, one line a trial


def test_advise_cancel_stops_a_queued_search(tmp_path):
    path = tmp_path / "c.db"
    with Store(path) as s:
        advice_id = s.queue_advice({"spec": {}, "advise": {"trials": 1}}, "to cancel")
    r = cli("advise", "--cancel", str(advice_id), "--store", str(path), timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "cancelled", r.stderr
    r = cli("advise", "--cancel", "99", "--store", str(path), timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == f"floss_core advise: error: no advice 99 in {path}"


def test_a_cancelled_search_stops_before_its_next_trial(tmp_path):
    spec = tiny_spec()
    with Store(tmp_path / "s.db") as s:
        advice_id = s.create_advice(AD.advice_config(spec, AD.AdviseConfig(trials=2)), "cancelled early")
        assert s.request_cancel_advice(advice_id) == "running"
        assert AD.run_advice(s, advice_id, max_workers=1) == "cancelled"
        row = s.advice(advice_id)
        assert row["status"] == "cancelled" and s.advice_trials(advice_id) == [] and s.experiments().empty


def test_an_interrupted_search_resumes_after_its_stored_trials(tmp_path):
    path = tmp_path / "s.db"
    spec = tiny_spec(seeds=2)
    with Store(path) as s:
        advice_id = AD.advise(spec, AD.AdviseConfig(trials=1, rung_seeds=2), s, max_workers=1)
        before = s.advice_trials(advice_id)
        n_experiments = len(s.experiments())
    # as if it had been stopped after two of its three trials: a bigger budget, back in the queue
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE advice SET status = 'queued', config_json = json_set(config_json, '$.advise.trials', 2) "
                     "WHERE id = ?", (advice_id,))
    with Store(path) as s:
        assert AD.run_advice(s, advice_id, max_workers=1) == "done"
        after = s.advice_trials(advice_id)
        assert [t["trial"] for t in after] == [0, 1, 2] and same(after[:2], before)    # the stored trials kept as they were
        assert len(s.experiments()) == n_experiments + 1                            # only the new trial trained
        assert s.advice(advice_id)["result"]["statement"] == A.recommend(after, 0.8)["statement"]


def test_a_queued_search_is_run_by_the_worker(tmp_path):
    from floss_core.runner import worker_loop

    path = tmp_path / "q.db"
    spec = tiny_spec(seeds=2, delays=[4, 6])   # two delays: a trial's runs are every seed at every delay
    r = cli("advise", *tiny_args(spec), "--trials", "1", "--store", str(path), "--queue", "--json")
    assert r.returncode == 0, r.stderr
    advice_id = json.loads(r.stdout)["advice_id"]
    with Store(path, create=False) as s:
        assert s.advice(advice_id)["status"] == "queued" and s.experiments().empty
    assert worker_loop(path, exit_when_idle=True, max_workers=1) == 1
    with Store(path, create=False) as s:
        row = s.advice(advice_id)
        assert row["status"] == "done" and row["trials_done"] == 2 and row["result"]["statement"]
        assert row["worker_id"] is not None
        for t in s.advice_trials(advice_id):
            assert t["n"] == len(t["seeds"]) * 2
            runs = s.runs(t["experiment_ids"][0])
            assert sorted(set(runs["delay"])) == [4, 6]


@pytest.mark.parametrize("args, words", [
    (["--target", "1.5"], "target must be a success rate in (0, 1]"),
    (["--trials", "0"], "trials must be an integer >= 1"),
    (["--schedules", "none,pre"], "advise searches the schedules itself: drop --schedules"),
    (["--search-schedules", "pre,magic"], "unknown schedule to search 'magic'"),
    (["--knobs", "k,lr"], "unknown knob 'lr'"),
    (["--rung-seeds", "5"], "rung_seeds must be in 1..3"),
    (["--k", "0"], "k must be in 1.."),
    (["--trials", "x"], "expected an integer"),
])
def test_bad_input_is_one_line_and_exit_2_and_stores_nothing(tmp_path, args, words):
    path = tmp_path / "never.db"
    r = cli("advise", "--seeds", "3", *args, "--store", str(path), timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], r.stderr
    assert not path.exists()
