"""The examples in examples/ run as the README says: examples/lm_lstm.py's corpus is what its grammar
says (deterministic for a seed, the long-range tokens where the name fixes them), and its --quick run
prints every arm's figures as finite numbers and exits 0."""
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LM = ROOT / "examples" / "lm_lstm.py"


@pytest.fixture(scope="module")
def lm():
    spec = importlib.util.spec_from_file_location("lm_lstm_example", LM)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_corpus_is_deterministic_for_a_seed(lm):
    a, b, c = lm.make_corpus(40, seed=3), lm.make_corpus(40, seed=3), lm.make_corpus(40, seed=4)
    for key in ("tokens", "answer", "gap", "logp"):
        assert (a[key] == b[key]).all()
    assert len(a["tokens"]) != len(c["tokens"]) or not (a["tokens"] == c["tokens"]).all()
    train, val = lm.corpora(40, 10, seed=3)
    assert (train["tokens"] == a["tokens"]).all()          # the training split is make_corpus(seed)
    assert not (val["tokens"][:50] == train["tokens"][:50]).all()


def test_the_long_range_positions_are_where_the_grammar_says(lm):
    c = lm.make_corpus(60, seed=1)
    toks, ans, gap = c["tokens"].tolist(), c["answer"].tolist(), c["gap"].tolist()
    ids = lm.ID
    positions = [i for i, x in enumerate(ans) if x]
    assert len(positions) == 60 == toks.count(ids["."])    # one per sentence
    fillers = {ids[w] for w in lm.FILLER}
    lo, hi = lm.GAP
    for i in positions:
        key = toks[i - gap[i]]
        assert lo + 2 <= gap[i] <= hi + 2
        assert lm.VOCAB[key] in lm.KEYS
        assert toks[i] == ids[lm.FOODS[lm.KEYS.index(lm.VOCAB[key])]]   # the name fixes the food
        assert toks[i - 1] == ids["wants"] and toks[i + 1] == ids["."]
        assert set(toks[i - gap[i] + 1: i - 1]) <= fillers      # only filler words in between
    assert set(gap[i] for i, x in enumerate(ans) if not x) == {0}


def test_the_grammars_own_probabilities(lm):
    c = lm.make_corpus(30, seed=2)
    lp, nomem, ans = c["logp"], c["logp_nomem"], c["answer"]
    assert bool((lp <= 0).all()) and bool(lp.isfinite().all())
    assert bool((lp[ans] == 0).all())                       # the food is certain given the name ...
    assert torch_close(nomem[ans], -math.log(lm.N_KEYS))  # ... and 1 in N_KEYS without it
    assert bool((nomem[~ans] == lp[~ans]).all())


def torch_close(t, value, tol=1e-9):
    return bool(((t - value).abs() < tol).all())


def test_evaluation_scores_every_long_range_position(lm):
    import torch
    torch.manual_seed(0)
    val = lm.make_corpus(40, seed=5)
    ev = lm.evaluate(lm.LM(len(lm.VOCAB), 4, 8), val, bptt=20, columns=2)
    # batchify drops at most columns - 1 tokens at the end; the first token of each column is never a target
    assert int(val["answer"].sum()) - 3 <= ev["n_long"] <= int(val["answer"].sum())
    assert math.isfinite(ev["ppl"]) and ev["ppl"] > 1
    assert 0 <= ev["acc"] <= 1


def test_the_forget_gate_is_the_lstms_second_gate(lm):
    import torch
    torch.manual_seed(0)
    model, val = lm.LM(len(lm.VOCAB), 4, 8), lm.make_corpus(10, seed=0)
    H = model.rnn.hidden_size
    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            if name.startswith("bias"):
                p.zero_()
                p[H: 2 * H] = 10.0                      # only the forget gate's biases (order i, f, g, o)
    assert lm.forget_gate(model, val, steps=50) > 0.99
    with torch.no_grad():
        for name, p in model.rnn.named_parameters():
            if name.startswith("bias"):
                p[H: 2 * H] = -10.0
    assert lm.forget_gate(model, val, steps=50) < 0.01


NUMBER = r"([-+]?(?:\d+\.\d*|\d+|nan|inf))"


@pytest.mark.slow
def test_lm_lstm_quick_prints_every_arm():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(LM), "--quick"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    floors = re.search(r"grammar itself: " + NUMBER + r" with .*?, " + NUMBER + " without", out)
    assert floors and 1 < float(floors[1]) < float(floors[2]), out
    for arm in ("(a) none", "(b) pre", "(c) regularizer"):
        line = next((ln for ln in out.splitlines() if ln.startswith(arm)), None)
        assert line is not None, f"no line for {arm}:\n{out}"
        m = re.search(r"val ppl\s+" + NUMBER + r"\s+long-range acc " + NUMBER + r".*λ_1 " + NUMBER +
                      r"\s+forget gate " + NUMBER + r"\s+" + NUMBER + r" s\s+x" + NUMBER + " of", line)
        assert m, line
        ppl, acc, lam, gate, secs, ratio = (float(v) for v in m.groups())
        assert math.isfinite(ppl) and ppl >= float(floors[1]) * 0.99, line   # no model beats the grammar
        assert 0 <= acc <= 1 and math.isfinite(lam) and 0 < gate < 1 and secs > 0 and ratio > 0, line
    trained = re.findall(r"^\s+(\d+) steps\s+val ppl\s+" + NUMBER, out, flags=re.M)
    assert trained and all(math.isfinite(float(p)) for _, p in trained), out
