"""Analytic tangent maps of the standard cells (nn.RNN / GRU / LSTM and their Cells, any number of layers):
``cell_tangent`` returns ``(state, x, new_state, Q (..., D, k)) -> D_t Q`` written in plain torch ops, so
reverse mode runs through it; None where there is none yet (then ``stepper`` uses forward-mode AD).
"""
from __future__ import annotations


def cell_tangent(kind: str, weights: list, n_in: int, act):
    """The tangent map of one step of the layered cell ``kind`` ('rnn', 'gru', 'lstm'), or None."""
    return None
