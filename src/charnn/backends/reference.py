"""The work a backend does, in numpy: many training updates, evaluation, and sampling.

These functions are the reference the compiled kernels (backends/compiled/) must equal. Both take
the same arguments and change the same arrays in place, so the trainer does not know which
one runs. The text (data) is an array of character indices, uint8 or int32 (a memmap too).

Training data come as a schedule of windows: update u reads, for each lane (batch row) l,
the inputs data[s : s+L] and the targets data[s+1 : s+L+1] with s = starts[u, l] and
L = lengths[u, l] (0 <= L <= seq_length; 0 means the lane sits this update out). If
resets[u, l] is set, the lane's hidden state is zeroed before the window. The loss of an
update is summed over each window and averaged over the lanes that have one; the gradient
is that average's gradient, clipped elementwise, then handed to the optimiser.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import optim
from ..model import Params, softmax
from ..networks import CELLS, Network
from .calls import NO_DROPOUT, Dropout, Optimiser, Windows

# What this backend runs (see backends/__init__.py).
NETWORKS = tuple(CELLS)          # every network: these are their numpy modules
DTYPES = ("float64", "float32")

# Characters whose hidden states and outputs total_loss holds at once.
EVAL_BLOCK = 65_536


def _quiet(fn):
    """Run fn without numpy's warnings on overflow, log(0) or NaN: a diverging model's inf and
    NaN come back in the losses, and the trainer reports them in one line of its own."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return quiet


@_quiet
def train_updates(params: Params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                  dropout: Dropout = NO_DROPOUT) -> np.ndarray:
    """Run the updates of `windows` (calls.py says what each object holds). params, the
    optimiser's state and h change in place: h holds every lane's state, (lanes, m) for the
    vanilla RNN, (lanes, layers, S, m) for a stacked network (networks.state_shape). Stacked
    networks drop units between layers and on the top's output as `dropout` says. Returns the
    loss of each update (float64)."""
    spec = Network.of_params(params)
    network, layers, m = spec.module, spec.layers, spec.hidden
    w = windows
    losses = np.empty(w.count)
    step = optimiser.step
    for u in range(w.first, w.last):
        grads = Params.zeros_like(params)
        loss_sum, active = 0.0, 0
        t = step + 1                                     # this update's number, from 1
        for lane in range(h.shape[0]):
            L = int(w.lengths[u, lane])
            if L == 0:
                continue
            if w.resets[u, lane]:
                h[lane] = 0
            s = int(w.starts[u, lane])
            masks = network.dropout_masks(dropout.p, L, m, layers, (dropout.seed, t, lane),
                                          params.dtype, dropout.output)
            loss, g, state = network.loss_and_gradients(
                params, w.data[s:s + L], w.data[s + 1:s + L + 1], spec.layered(h[lane]), masks)
            h[lane] = spec.unlayered(state)
            for name, acc in grads.items():
                acc += g[name]
            loss_sum += loss
            active += 1
        if active > 1:                                   # average over the batch
            for _, acc in grads.items():
                acc /= active
        optim.clip_(grads, optimiser.clip)
        optim.step_(optimiser.rule, params, grads, optimiser.state, optimiser.eta, step + 1)
        step += 1
        losses[u - w.first] = loss_sum / active
    return losses


def loss_and_gradients(params, inputs: np.ndarray, targets: np.ndarray, state: np.ndarray,
                       masks=None):
    """The network's loss_and_gradients (networks/stack.py) over one sequence: (loss, grads,
    state_last) from a state (layers, S, m), with dropout masks (or None)."""
    return Network.of_params(params).module.loss_and_gradients(params, inputs, targets, state,
                                                               masks)


@_quiet
def total_loss(params: Params, data: np.ndarray, segments: np.ndarray,
               h0: np.ndarray | None = None) -> tuple[float, int]:
    """Forward only: the summed loss (nats) of predicting every character of every segment
    from the ones before it. segments is (S, 2): data[start:end], inputs data[start:end-1],
    targets data[start+1:end]. The state starts at zero in each segment, or at h0[q] for
    segment q when h0 holds one state per segment, or at h0 in every segment when h0 is one
    state (networks.state_shape). Returns (summed loss, number of characters predicted)."""
    spec = Network.of_params(params)
    network, shape = spec.module, spec.state_shape
    total, count = 0.0, 0
    segments = np.asarray(segments).reshape(-1, 2)
    if h0 is not None:
        h0 = np.asarray(h0)
        if h0.shape != shape and h0.shape != (len(segments),) + shape:
            raise ValueError(f"h0 must have shape {(len(segments),) + shape} or {shape}, "
                             f"not {h0.shape}")
    for q, (start, end) in enumerate(segments):
        if end - start < 2:
            continue
        if h0 is None:
            state = np.zeros(shape, params.dtype)
        else:
            state = np.asarray(h0 if h0.shape == shape else h0[q], params.dtype)
        state = spec.layered(state)
        # in blocks, carrying the state, so that a long segment never holds all its states
        for block in range(start, end - 1, EVAL_BLOCK):
            stop = min(block + EVAL_BLOCK, end - 1)
            loss, state = network.sequence_loss(params, data[block:stop],
                                                data[block + 1:stop + 1], state)
            total += loss
        count += end - start - 1
    return total, count


def advance(params: Params, h: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """The state after feeding `inputs` to the network from h."""
    spec = Network.of_params(params)
    state = spec.layered(h.copy())
    for x in inputs:
        state, _ = spec.module.step(params, int(x), state)
    return spec.unlayered(state)


def filtered_probabilities(o: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """p = softmax(o / T), restricted to the top_k most likely characters (top_k > 0) and to the
    smallest set of most likely characters whose probabilities reach top_p (top_p < 1), then
    renormalised. Ties are broken towards the lower index."""
    p = softmax(o / temperature).astype(np.float64)
    order = np.argsort(-p, kind="stable")               # most likely first
    keep = len(p)
    if 0 < top_k < keep:
        keep = top_k
    if top_p < 1.0:
        reach = np.cumsum(p[order])
        keep = min(keep, int(np.searchsorted(reach, top_p, side="left")) + 1)
    if keep < len(p):
        p[order[keep:]] = 0.0
    return p / p.sum()


def sample_indices(params: Params, h: np.ndarray, x: int, uniforms: np.ndarray,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   greedy: bool = False, stop_index: int = -1) -> np.ndarray:
    """Draw up to len(uniforms) characters: from x and the state h take one step of the
    network (the RNN: h = tanh(W h + U x + b)), p = the filtered softmax of the logits
    V h + c, draw the next x with the next uniform number (inverse CDF), feed it back. Stops
    after drawing stop_index (it is the last element).

    h is updated in place to the state the last character was drawn from, so that a next
    call with x = that character continues the same text.
    """
    spec = Network.of_params(params)
    drawn = []
    for u in uniforms:
        state, o = spec.module.step(params, x, spec.layered(h))
        h[...] = spec.unlayered(state)
        if greedy:
            x = int(np.argmax(o))
        else:
            cdf = np.cumsum(filtered_probabilities(o, temperature, top_k, top_p))
            x = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(cdf) - 1)
        drawn.append(x)
        if x == stop_index:
            break
    return np.array(drawn, dtype=np.int64)
