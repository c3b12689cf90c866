"""Check analytic gradients against centred finite differences.

For every element theta_i of every parameter of every layer (W_ih{l}, the cell's own weights
and biases, V, c: the network spec's names; check_gradients checks the assignment's network in
its own names, b, c, U, W, V):

    numeric_i = (L(theta + h e_i) - L(theta - h e_i)) / (2 h)

compared with the analytic gradient a_i by

    absolute = |a_i - numeric_i|,   relative = |a_i - numeric_i| / max(|a_i| + |numeric_i|, 1e-12).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .model import Params, loss_and_gradients
from .networks import Network

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
    """check_network_gradients for the assignment's network in its notation: params named b,
    c, U, W, V, and `gradient_fn` (model.loss_and_gradients by default) of that signature, its
    state h (m,). h_prev (m,), or (B, m) with inputs and targets (B, L) for a batch. The rows
    keep the assignment's names."""
    from . import model
    from .networks import rnn
    inputs = np.asarray(inputs)
    lanes = inputs.shape[0] if inputs.ndim == 2 else 1
    m = params.hidden_size
    states = None if h_prev is None else np.asarray(h_prev).reshape(lanes, 1, 1, m)

    def network_fn(p, x, y, state, masks=None):
        loss, grads, h = gradient_fn(model.to_assignment(p), x, y, state[0, 0])
        return loss, dict(model.to_network(grads).items()), np.asarray(h).reshape(1, 1, m)

    rows = check_network_gradients(rnn, model.to_network(params), inputs, targets, states,
                                   step, threshold, gradient_fn=network_fn,
                                   elements=elements, seed=seed)
    return assignment_rows(rows)


def assignment_rows(rows: list[GradientCheckRow]) -> list[GradientCheckRow]:
    """The rows of the vanilla RNN of one layer in the assignment's names and order (b, c, U,
    W, V), as its report shows them."""
    from .model import NETWORK_NAMES
    by_name = {row.name: row for row in rows}
    return [replace(by_name[theirs], name=ours) for ours, theirs in NETWORK_NAMES.items()]


def check_network_gradients(network, params, inputs: np.ndarray, targets: np.ndarray,
                            states: np.ndarray | None = None, step: float = 1e-4,
                            threshold: float = 1e-6, gradient_fn=None,
                            elements: int | None = None, seed: int = 0,
                            masks=None) -> list[GradientCheckRow]:
    """Compare `gradient_fn`'s gradients (the network's own by default) with centred
    differences of the loss, for every element of every parameter of every layer (or
    `elements` of each, drawn at random with `seed`, for big models). Runs in float64.

    network is a module of charnn.networks; states (lanes, layers, S, m) or None (zeros);
    inputs and targets (L,) or (B, L) for a batch, whose loss is the mean over the B lanes of
    each lane's summed loss, as in training with --batch-size B. masks: the dropout masks of
    each lane (a list, one network.dropout_masks result per lane) or None.
    """
    gradient_fn = gradient_fn or network.loss_and_gradients
    params = Params(dict(params.items())).astype(np.float64)
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    lanes = inputs.shape[0] if inputs.ndim == 2 else 1
    m, layers = params.hidden_size, Network.of_params(params).layers
    if states is None:
        states = np.zeros((lanes,) + network.zero_state(m, layers).shape)
    states = np.asarray(states, np.float64).reshape((lanes,) + network.zero_state(m, layers).shape)
    inputs, targets = inputs.reshape(lanes, -1), targets.reshape(lanes, -1)
    masks = masks if masks is not None else [None] * lanes
    analytic = Params.zeros_like(params)
    for x, y, state, mask in zip(inputs, targets, states, masks):
        _, grads, _ = gradient_fn(params, x, y, state, mask)
        for name, acc in analytic.items():
            acc += grads[name] / lanes
    # The differences are taken in extended precision where the platform has it (x86: 64-bit
    # mantissa): in float64 the loss's rounding, ~1e-14 of ~100 nats, divided by 2h, is ~1e-10,
    # which is larger than 1e-6 of the smallest gradient elements.
    wide = params.astype(np.longdouble)
    wide_states = states.astype(np.longdouble)
    wide_masks = [None if mk is None else [a.astype(np.longdouble) for a in mk] for mk in masks]

    def loss() -> np.longdouble:
        total = np.longdouble(0)
        for x, y, state, mask in zip(inputs, targets, wide_states, wide_masks):
            _, P, _ = network.forward(wide, x, state, mask)
            total -= np.log(P[np.arange(len(y)), y]).sum()
        return total / lanes

    rng = np.random.default_rng(seed)
    rows = []
    for name in params.names:
        theta = wide[name]
        indices = list(np.ndindex(theta.shape))
        if elements is not None and elements < len(indices):
            indices = [indices[i] for i in rng.choice(len(indices), elements, replace=False)]
        a = np.array([analytic[name][i] for i in indices])
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


def gradcheck_problem(data: np.ndarray, K: int, hidden: int = 5, seq_length: int = 25,
                      sigma: float = 0.01, seed: int = 0, batch_size: int = 1,
                      network: str = "rnn", layers: int = 1):
    """The network and sequences the default check uses: a small network (m = hidden, of
    kind `network` with `layers` layers), initialised as for training, the first seq_length
    characters of the text (with batch_size > 1: that many consecutive windows, one per
    lane), and a random starting state, so that the gradient through the carried state is
    exercised too. Returns (params, inputs, targets, states), states (layers, S, m), or
    (B, layers, S, m) for a batch (for the RNN's check_gradients, h_prev in that shape)."""
    from .networks import NETWORKS
    net = NETWORKS[network]
    rng = np.random.default_rng(seed)
    params = Params(net.initial_params(K, hidden, layers, sigma, rng))
    n = min(seq_length, (len(data) - 1) // batch_size)
    if n < 1:
        raise ValueError("the text is too short for this check")
    shape = net.zero_state(hidden, layers).shape
    if batch_size == 1:
        return params, data[:n], data[1:n + 1], np.tanh(rng.standard_normal(shape))
    starts = np.arange(batch_size) * n
    inputs = np.stack([data[s:s + n] for s in starts])
    targets = np.stack([data[s + 1:s + n + 1] for s in starts])
    return params, inputs, targets, np.tanh(rng.standard_normal((batch_size,) + shape))


def format_table(rows: list[GradientCheckRow], threshold: float) -> str:
    lines = [f"{'param':<6}{'shape':>10}  {'max abs diff':>13}  {'max rel diff':>13}  "
             f"result (rel <= {threshold:g})"]
    for r in rows:
        shape = "x".join(map(str, r.shape))
        lines.append(f"{r.name:<6}{shape:>10}  {r.max_abs:13.3e}  {r.max_rel:13.3e}  "
                     f"{'pass' if r.passed else 'FAIL'}")
    return "\n".join(lines)


# -- the check as `charnn gradcheck` and the report's Figure 1 run it ------------------------

@dataclass
class GradCheck:
    """A gradient check's result, and what it was run on."""
    rows: list[GradientCheckRow]
    network: Network             # the small network checked
    seq_length: int              # characters per lane
    batch_size: int
    sigma: float
    step: float
    threshold: float
    dropout: float
    elements: int | None         # random elements checked per parameter (None: all)
    backend: str                 # whose analytic gradients: the backend's name
    gradients_of: str            # the same, in words
    seconds: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def hidden(self) -> int:
        return self.network.hidden

    @property
    def K(self) -> int:  # noqa: N802
        return self.network.vocab


def default_step(network) -> float:
    """The centred difference's h: the assignment's 1e-4 for the vanilla RNN; 1e-5 for the
    gated networks, whose larger initial weights (Network.default_sigma) curve the loss more."""
    return 1e-5 if network.module.GATED else 1e-4


def run_gradient_check(network, data: np.ndarray, seq_length: int = 25, *,
                       sigma: float | None = None, step: float | None = None,
                       threshold: float = 1e-6, backend: str = "numpy", batch_size: int = 1,
                       elements: int | None = None, seed: int = 0, announce=None) -> GradCheck:
    """Check the analytic gradients of `network` (a networks.Network, its vocab the text's)
    on the first characters of `data`, from a random state, with the network's default
    initial scale and step unless given: the numpy reference's own gradients (backend
    "numpy") or those of the backend the registry gives for `backend` ("auto": the fastest
    that runs the network), the dropout masks fixed by `seed`. announce is told of a compile."""
    import time

    from .backends import get_backend, resolve_backend
    started = time.perf_counter()
    sigma = network.default_sigma if sigma is None else sigma
    step = default_step(network) if step is None else step
    params, inputs, targets, states = gradcheck_problem(
        data, network.vocab, network.hidden, seq_length, sigma, seed, batch_size, network.cell,
        network.layers)
    name = resolve_backend(backend, network.cell)
    module = network.module
    if name == "numpy":
        gradient_fn, whose = None, f"the numpy reference (networks/{network.cell}.py)"
    else:
        own = get_backend(name, announce, network=network,
                          jobs=("gradients",)).loss_and_gradients
        gradient_fn, whose = _masks_where_given(own), f"the {name} backend"
    lanes = inputs.shape[0] if inputs.ndim == 2 else 1
    masks = [module.dropout_masks(network.dropout, inputs.shape[-1], network.hidden,
                                  network.layers, (seed, 1, lane), output=network.output_dropout)
             for lane in range(lanes)]
    rows = check_network_gradients(module, params, inputs, targets, states, step, threshold,
                                   gradient_fn, elements=elements, seed=seed, masks=masks)
    return GradCheck(rows, network, inputs.shape[-1], batch_size, sigma, step, threshold,
                     network.dropout, elements, name, whose, time.perf_counter() - started)


def _masks_where_given(gradient_fn):
    """A backend's loss_and_gradients in the networks' interface: the masks passed only where
    there are any (PyTorch's module-level function takes none)."""
    def network_fn(params, inputs, targets, state, masks=None):
        args = (params, inputs, targets, state)
        loss, grads, last = gradient_fn(*args) if masks is None else gradient_fn(*args, masks)
        return loss, dict(grads.items()), np.asarray(last)
    return network_fn
