"""Check analytic gradients against centred finite differences.

For every element theta_i of b, c, U, W, V:

    numeric_i = (L(theta + h e_i) - L(theta - h e_i)) / (2 h)

compared with the analytic gradient a_i by

    absolute = |a_i - numeric_i|,   relative = |a_i - numeric_i| / max(|a_i| + |numeric_i|, 1e-12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .model import PARAM_NAMES, Params, loss_and_gradients

LossAndGradients = Callable[[Params, np.ndarray, np.ndarray, np.ndarray],
                            tuple[float, Params, np.ndarray]]


@dataclass
class GradientCheckRow:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    passed: bool


def check_gradients(params: Params, inputs: np.ndarray, targets: np.ndarray,
                    h_prev: np.ndarray | None = None, step: float = 1e-4,
                    threshold: float = 1e-6,
                    gradient_fn: LossAndGradients = loss_and_gradients,
                    elements: int | None = None, seed: int = 0) -> list[GradientCheckRow]:
    """Compare `gradient_fn`'s gradients (the model's own by default) with centred differences
    of the loss, for every element of every parameter (or `elements` of each, drawn at random
    with `seed`, for big models). Runs in float64.

    inputs and targets of shape (B, L) with h_prev (B, m) check a batch: the loss is then the
    mean over the B lanes of each lane's summed loss, as in training with --batch-size B.
    """
    params = params.astype(np.float64)
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    batched = inputs.ndim == 2
    lanes = inputs.shape[0] if batched else 1
    if h_prev is None:
        h_prev = np.zeros((lanes, params.hidden_size) if batched else params.hidden_size)
    h_prev = np.asarray(h_prev, np.float64).reshape(lanes, params.hidden_size)
    inputs, targets = inputs.reshape(lanes, -1), targets.reshape(lanes, -1)

    analytic = Params.zeros_like(params)
    for x, y, h in zip(inputs, targets, h_prev):
        _, grads, _ = gradient_fn(params, x, y, h)
        for name, acc in analytic.items():
            acc += getattr(grads, name) / lanes

    # The differences are taken in extended precision where the platform has it (x86: 64-bit
    # mantissa): in float64 the loss's rounding, ~1e-14 of ~100 nats, divided by 2h, is ~1e-10,
    # which is larger than 1e-6 of the smallest gradient elements.
    wide = params.astype(np.longdouble)
    h_wide = h_prev.astype(np.longdouble)

    def loss() -> np.longdouble:
        return sum(_wide_loss(wide, x, y, h) for x, y, h in zip(inputs, targets, h_wide)) / lanes

    rng = np.random.default_rng(seed)
    rows = []
    for name in PARAM_NAMES:
        theta = getattr(wide, name)
        indices = list(np.ndindex(theta.shape))
        if elements is not None and elements < len(indices):
            indices = [indices[i] for i in rng.choice(len(indices), elements, replace=False)]
        a = np.array([getattr(analytic, name)[i] for i in indices])
        numeric = np.empty(len(indices))
        for k, i in enumerate(indices):
            saved = theta[i]
            theta[i] = saved + step
            loss_plus = loss()
            theta[i] = saved - step
            loss_minus = loss()
            theta[i] = saved
            numeric[k] = float((loss_plus - loss_minus) / (2 * step))
        diff = np.abs(a - numeric)
        rel = diff / np.maximum(np.abs(a) + np.abs(numeric), 1e-12)
        max_rel = float(rel.max())
        rows.append(GradientCheckRow(name, theta.shape, float(diff.max()), max_rel,
                                     max_rel <= threshold))
    return rows


def _wide_loss(params: Params, inputs, targets, h_prev):
    """sequence_loss in the params' own (extended) precision, not rounded to a Python float."""
    h = h_prev
    loss = 0
    for x, y in zip(inputs, targets):
        h = np.tanh(params.W @ h + params.U[:, x] + params.b)
        o = params.V @ h + params.c
        o = o - o.max()
        loss = loss - (o[y] - np.log(np.exp(o).sum()))      # -log softmax(o)[y], stably
    return loss


def gradcheck_problem(data: np.ndarray, K: int, hidden: int = 5, seq_length: int = 25,
                      sigma: float = 0.01, seed: int = 0, batch_size: int = 1):
    """The network and sequences the default check uses: a small network (m = hidden),
    initialised as for training, the first seq_length characters of the text (with
    batch_size > 1: that many consecutive windows, one per lane), and a random h_prev so
    that the gradient through the carried state is exercised too."""
    rng = np.random.default_rng(seed)
    params = Params.initial(hidden, K, sigma, rng)
    n = min(seq_length, (len(data) - 1) // batch_size)
    if n < 1:
        raise ValueError("the text is too short for this check")
    if batch_size == 1:
        return params, data[:n], data[1:n + 1], np.tanh(rng.standard_normal(hidden))
    starts = np.arange(batch_size) * n
    inputs = np.stack([data[s:s + n] for s in starts])
    targets = np.stack([data[s + 1:s + n + 1] for s in starts])
    return params, inputs, targets, np.tanh(rng.standard_normal((batch_size, hidden)))


def format_table(rows: list[GradientCheckRow], threshold: float) -> str:
    lines = [f"{'param':<6}{'shape':>10}  {'max abs diff':>13}  {'max rel diff':>13}  "
             f"result (rel <= {threshold:g})"]
    for r in rows:
        shape = "x".join(map(str, r.shape))
        lines.append(f"{r.name:<6}{shape:>10}  {r.max_abs:13.3e}  {r.max_rel:13.3e}  "
                     f"{'pass' if r.passed else 'FAIL'}")
    return "\n".join(lines)
