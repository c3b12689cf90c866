"""The baseline: the textbook per-time-step numpy RNN, as a course hand-out writes it.

One-hot vectors are (K, 1) matrices, every operation is an np.dot per time step, the loop
runs in Python, and AdaGrad is applied parameter by parameter. Same model and update as
charnn (model.py, optim.py); only the style differs.
"""

from __future__ import annotations

import numpy as np


def loss_fun(inputs, targets, hprev, U, W, V, b, c):
    """Forward and backward over one sequence. Column vectors throughout."""
    K = V.shape[0]
    xs, hs, ps = {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((K, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(np.dot(U, xs[t]) + np.dot(W, hs[t - 1]) + b)
        o = np.dot(V, hs[t]) + c
        e = np.exp(o - np.max(o))
        ps[t] = e / np.sum(e)
        loss += -np.log(ps[t][targets[t], 0])
    dU, dW, dV = np.zeros_like(U), np.zeros_like(W), np.zeros_like(V)
    db, dc = np.zeros_like(b), np.zeros_like(c)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        do = np.copy(ps[t])
        do[targets[t]] -= 1
        dV += np.dot(do, hs[t].T)
        dc += do
        dh = np.dot(V.T, do) + dhnext
        da = (1 - hs[t] * hs[t]) * dh
        db += da
        dU += np.dot(da, xs[t].T)
        dW += np.dot(da, hs[t - 1].T)
        dhnext = np.dot(W.T, da)
    for d in (dU, dW, dV, db, dc):
        np.clip(d, -5, 5, out=d)
    return loss, dU, dW, dV, db, dc, hs[len(inputs) - 1]


def train(data, K, m=100, seq_length=25, eta=0.1, updates=100, seed=0, state=None):
    """`updates` AdaGrad updates walking `data` (character indices). Returns the state, so a
    later call continues where this one stopped."""
    if state is None:
        rng = np.random.default_rng(seed)
        U = rng.standard_normal((m, K)) * 0.01
        W = rng.standard_normal((m, m)) * 0.01
        V = rng.standard_normal((K, m)) * 0.01
        b, c = np.zeros((m, 1)), np.zeros((K, 1))
        mem = [np.zeros_like(p) for p in (U, W, V, b, c)]
        state = dict(params=[U, W, V, b, c], mem=mem, h=np.zeros((m, 1)), e=0, losses=[])
    params, mem = state["params"], state["mem"]
    for _ in range(updates):
        e = state["e"]
        if e + seq_length + 1 >= len(data):
            e, state["h"] = 0, np.zeros((m, 1))
        inputs = data[e:e + seq_length]
        targets = data[e + 1:e + seq_length + 1]
        loss, *grads, state["h"] = loss_fun(inputs, targets, state["h"], *params)
        for p, g, mm in zip(params, grads, mem):
            mm += g * g
            p += -eta * g / np.sqrt(mm + 1e-8)
        state["losses"].append(loss)
        state["e"] = e + seq_length
    return state
