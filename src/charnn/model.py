"""The vanilla character RNN, written in numpy as the readable reference.

For t = 1..tau, with x_t the input character and y_t the next one:

    a_t = W h_{t-1} + U x_t + b        h_t = tanh(a_t)
    o_t = V h_t + c                    p_t = softmax(o_t)
    loss = - sum_t log p_t[y_t]        (summed over the sequence, not averaged)

Shapes: U (m, K), W (m, m), V (K, m), b (m,), c (K,); K characters, m hidden units.
x_t is one-hot, so U x_t is the column U[:, x_t]: no one-hot matrix is ever built.

This is the assignment's network in the assignment's names, as its report writes it. The
same network is the vanilla RNN cell of one layer (networks/rnn.py), whose parameters carry
the names every stacked network shares: U = W_ih0, W = W_hh0, b = b_ih0 (to_network and
to_assignment translate), and which gives these functions' numbers bit for bit.
"""

from __future__ import annotations

import numpy as np

PARAM_NAMES = ("b", "c", "U", "W", "V")
# The assignment's name of each parameter -> the vanilla RNN cell's (networks/rnn.py).
NETWORK_NAMES = {"b": "b_ih0", "c": "c", "U": "W_ih0", "W": "W_hh0", "V": "V"}


class Params:
    """A network's parameters: named arrays in the network's order, read as params.W or
    params["W"]. The optimisers, checkpoints, gradient check and sampling iterate over
    items() without knowing which network they belong to (networks/ holds the others'
    names). For this network: b (m,), c (K,), U (m, K), W (m, m), V (K, m); every network
    ends in the same output layer V (K, m), c (K,), which gives the sizes below."""

    def __init__(self, arrays: dict[str, np.ndarray] | None = None, **named: np.ndarray):
        self.__dict__["_arrays"] = dict(arrays or {}, **named)
        self.__dict__["network"] = None                # see carrying()

    def carrying(self, network) -> "Params":
        """These parameters, knowing the network they belong to (a networks.Network), so
        that what runs them asks it rather than recognise them by their shapes; returns
        self."""
        self.__dict__["network"] = network
        return self

    @classmethod
    def initial(cls, m: int, K: int, sigma: float, rng: np.random.Generator,
                dtype=np.float64) -> "Params":
        """b = c = 0; U, W, V ~ N(0, sigma^2), drawn in that order from `rng`."""
        U = sigma * rng.standard_normal((m, K))
        W = sigma * rng.standard_normal((m, m))
        V = sigma * rng.standard_normal((K, m))
        return cls(b=np.zeros(m, dtype), c=np.zeros(K, dtype),
                   U=U.astype(dtype), W=W.astype(dtype), V=V.astype(dtype))

    @classmethod
    def zeros_like(cls, other: "Params") -> "Params":
        return cls({name: np.zeros_like(a) for name, a in other.items()}).carrying(
            getattr(other, "network", None))

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["_arrays"][name]
        except KeyError:
            raise AttributeError(f"these parameters have no {name!r}") from None

    def __setattr__(self, name: str, value) -> None:
        if name not in self._arrays:                  # (grads.b += da assigns, too)
            raise AttributeError(f"these parameters have no {name!r}")
        self._arrays[name] = value

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}{tuple(a.shape)}" for n, a in self._arrays.items())
        return f"Params({shapes}, {self.dtype})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._arrays)

    @property
    def hidden_size(self) -> int:
        return self.V.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.V.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.V.dtype

    def items(self):
        return self._arrays.items()

    def copy(self) -> "Params":
        return Params({name: a.copy() for name, a in self.items()}).carrying(self.network)

    def astype(self, dtype) -> "Params":
        return Params({name: a.astype(dtype) for name, a in self.items()}).carrying(self.network)


def softmax(o: np.ndarray) -> np.ndarray:
    """Stable softmax over the last axis: exp(o - max o) cannot overflow."""
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(params: Params, inputs: np.ndarray, h_prev: np.ndarray):
    """Run the network over `inputs` (tau character indices) from hidden state h_prev.

    Returns (H, P): H (tau + 1, m) with H[0] = h_prev and H[t] = h_t; P (tau, K) = p_t.
    """
    U, W, V, b, c = params.U, params.W, params.V, params.b, params.c
    tau, m = len(inputs), params.hidden_size
    H = np.empty((tau + 1, m), dtype=params.dtype)
    H[0] = h_prev
    for t, x in enumerate(inputs):
        a = W @ H[t] + U[:, x] + b                      # (m,)
        H[t + 1] = np.tanh(a)                           # (m,)
    O = H[1:] @ V.T + c                                 # (tau, K): all o_t in one product
    return H, softmax(O)


def sequence_loss(params: Params, inputs: np.ndarray, targets: np.ndarray,
                  h_prev: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss of one sequence, -sum_t log p_t[y_t], and the last hidden state."""
    H, P = forward(params, inputs, h_prev)
    loss = -np.log(P[np.arange(len(targets)), targets]).sum()
    return float(loss), H[-1].copy()


def loss_and_gradients(params: Params, inputs: np.ndarray, targets: np.ndarray,
                       h_prev: np.ndarray) -> tuple[float, Params, np.ndarray]:
    """Forward and backward through one sequence (back-propagation through time).

    Returns (loss, grads, h_last): grads holds dL/db, dL/dc, dL/dU, dL/dW, dL/dV.
    """
    W, V = params.W, params.V
    tau = len(inputs)
    H, P = forward(params, inputs, h_prev)
    loss = -np.log(P[np.arange(tau), targets]).sum()

    grads = Params.zeros_like(params)
    G = P.copy()                                        # dL/do_t = p_t - y_t (one-hot y_t)
    G[np.arange(tau), targets] -= 1                     # (tau, K)
    grads.c[:] = G.sum(axis=0)                          # (K,)
    grads.V[:] = G.T @ H[1:]                            # (K, m) = sum_t g_t h_t^T
    dh_next = np.zeros_like(h_prev)                     # dL/dh_t through h_{t+1}
    for t in reversed(range(tau)):
        dh = V.T @ G[t] + dh_next                       # dL/dh_t, (m,)
        da = dh * (1 - H[t + 1] ** 2)                   # through tanh: dL/da_t, (m,)
        grads.b += da
        grads.W += np.outer(da, H[t])                   # da_t h_{t-1}^T, (m, m)
        grads.U[:, inputs[t]] += da                     # only x_t's column
        dh_next = W.T @ da
    return float(loss), grads, H[-1].copy()


def to_network(params) -> "Params":
    """Parameters in the assignment's names (b, c, U, W, V) as the vanilla RNN cell's of one
    layer (W_ih0, W_hh0, b_ih0, V, c, in the network's order), carrying that network; the
    arrays themselves, not copies."""
    from .networks import Network
    K, m = params["V"].shape
    network = Network("rnn", 1, m, K)
    theirs = {NETWORK_NAMES[name]: params[name] for name in PARAM_NAMES}
    return Params({name: theirs[name] for name in network.param_names}).carrying(network)


def to_assignment(params) -> Params:
    """The vanilla RNN cell's parameters of one layer in the assignment's names (the arrays
    themselves)."""
    return Params({name: params[NETWORK_NAMES[name]] for name in PARAM_NAMES})
