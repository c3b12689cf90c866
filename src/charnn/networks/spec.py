"""The network a model is: its cell, layers, hidden size, vocabulary and dropout, stated once.

    spec = Network("gru", layers=2, hidden=256, vocab=65)
    spec.param_shapes()        # {"W_ih0": (768, 65), ..., "V": (65, 256), "c": (65,)}
    spec.param_count           # 694,337
    spec.state_shape           # (2, 1, 256): one lane's state
    spec.default_sigma         # the initial weights' scale when none is given
    spec.describe()            # "a GRU of 2 layers of 256 units"
    spec.summary()             # "GRU, 2 layers, m = 256, K = 65"

A run's spec is built from its settings (Network.from_config) and written into each
checkpoint's meta (to_dict); a checkpoint written before the spec was holds the same facts in
its config (Checkpoint.network). Whatever differs between networks is asked of the spec, or of
the network module it names (module), never guessed from the names of the arrays.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import gru, lstm, mlstm, rnn

# cell name -> its module (networks/__init__.py lists what each provides)
CELLS = {"rnn": rnn, "lstm": lstm, "gru": gru, "mlstm": mlstm}
# The initial scale of the networks that are not gated: the assignment's.
ASSIGNMENT_SIGMA = 0.01


@dataclass(frozen=True)
class Network:
    cell: str                    # a key of CELLS
    layers: int = 1
    hidden: int = 100            # m, units per layer
    vocab: int | None = None     # K, characters; None where only the shape of the network matters
    dropout: float = 0.0         # between stacked layers, while training
    output_dropout: float = 0.0  # on the top layer's output, while training

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config, vocab: int | None = None) -> "Network":
        """The network a TrainConfig (or its dict) trains, for `vocab` characters."""
        get = config.get if isinstance(config, dict) else \
            lambda name, default: getattr(config, name, default)
        return cls(get("model", "rnn"), get("layers", 1), get("hidden", 100), vocab,
                   get("dropout", 0.0), get("output_dropout", 0.0))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Network":
        """The spec to_dict wrote; a ValueError names what is wrong with it."""
        if not isinstance(values, dict):
            raise ValueError(f"a network is an object of {', '.join(NAMES)}")
        missing = [name for name in NAMES if name not in values and name not in LATER]
        if missing:
            raise ValueError(f"the network lacks {', '.join(missing)}")
        spec = cls(**{name: values[name] for name in NAMES if name in values})
        spec.check()
        return spec

    @classmethod
    def of_params(cls, params, dropout: float = 0.0) -> "Network":
        """The network these parameters are: the one they carry (Params.network), else the
        one among CELLS whose parameter shapes they have exactly (for arrays built by hand)."""
        carried = getattr(params, "network", None)
        if carried is not None:
            return carried
        shapes = {name: tuple(np.shape(a)) for name, a in params.items()}
        K, m = shapes["V"]
        for cell, module in CELLS.items():
            per_layer = len(module.param_shapes(K, m, 1)) - len(OUTPUT_LAYER)
            layers = (len(shapes) - len(OUTPUT_LAYER)) // per_layer
            if layers < 1:
                continue
            spec = cls(cell, layers, m, K, dropout)
            if spec.param_shapes() == shapes:
                return spec
        raise ValueError(f"no network has parameters of these shapes "
                         f"({', '.join(f'{n} {s}' for n, s in shapes.items())})")

    def check(self) -> "Network":
        """Raise a ValueError naming the first fact no network has."""
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if self.cell not in CELLS:
            raise ValueError(f"cell {self.cell!r} is unknown; one of {', '.join(CELLS)}")
        if not whole(self.layers) or self.layers < 1:
            raise ValueError(f"{self.layers!r} layers is not a positive whole number")
        if not whole(self.hidden) or self.hidden < 1:
            raise ValueError(f"hidden size {self.hidden!r} is not a positive whole number")
        if self.vocab is not None and (not whole(self.vocab) or self.vocab < 1):
            raise ValueError(f"vocabulary size {self.vocab!r} is not a positive whole number")
        for name in ("dropout", "output_dropout"):
            p = getattr(self, name)
            if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1):
                raise ValueError(f"{name.replace('_', ' ')} {p!r} is not a probability below 1")
        return self

    # -- what it is -------------------------------------------------------------------------

    @property
    def module(self):
        """The numpy reference of this cell (charnn.networks.rnn, lstm, gru or mlstm)."""
        return CELLS[self.cell]

    @property
    def assignment(self) -> bool:
        """Whether this is the assignment's network: the vanilla RNN of one layer, which
        model.py writes in the assignment's names and which has its own compiled kernels."""
        return getattr(self.module, "ASSIGNMENT", False) and self.layers == 1

    @property
    def state_vectors(self) -> int:
        """Vectors in each layer's state: h, and the LSTM's cell c."""
        return self.module.STATE_VECTORS

    @property
    def title(self) -> str:
        """The cell's name in words: 'vanilla RNN', 'LSTM', 'GRU'."""
        return self.module.TITLE

    @property
    def abbreviation(self) -> str:
        """The cell's short name: 'RNN', 'LSTM', 'GRU'."""
        return self.module.ABBREVIATION

    # -- parameters -------------------------------------------------------------------------

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """{name: shape}, in the order the initial weights are drawn."""
        return self.module.param_shapes(self._vocab(), self.hidden, self.layers)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.param_shapes())

    @property
    def param_count(self) -> int:
        """Numbers in the parameters, all layers and the output layer together."""
        return sum(math.prod(shape) for shape in self.param_shapes().values())

    @property
    def default_sigma(self) -> float:
        """The initial weights' standard deviation when none is given: the assignment's 0.01
        for the vanilla RNN; PyTorch's scale 1/sqrt(m) for the gated networks, whose lower
        layers barely learn from weights of 0.01 (a 2-layer GRU of 64 units: 4.78 bits/char
        after 300,000 characters, against 2.83)."""
        return 1 / math.sqrt(self.hidden) if self.module.GATED else ASSIGNMENT_SIGMA

    def initial_params(self, sigma: float | None = None, rng: np.random.Generator | None = None,
                       dtype=np.float64):
        """Params drawn as training starts them (sigma None: default_sigma), carrying this
        spec."""
        from ..model import Params
        rng = rng if rng is not None else np.random.default_rng(0)
        sigma = self.default_sigma if sigma is None else sigma
        arrays = self.module.initial_params(self._vocab(), self.hidden, self.layers, sigma,
                                            rng, dtype)
        return Params(arrays).carrying(self)

    # -- the state --------------------------------------------------------------------------

    @property
    def state_shape(self) -> tuple[int, ...]:
        """One lane's state as the kernels, the trainer and checkpoints hold it: (layers,
        STATE_VECTORS, m), h first in each layer (the layered_shape; every cell's)."""
        return self.layered_shape

    @property
    def layered_shape(self) -> tuple[int, int, int]:
        """One lane's state as the networks' interface takes it: (layers, STATE_VECTORS, m),
        with h first in each layer."""
        return (self.layers, self.state_vectors, self.hidden)

    def zero_state(self, dtype=np.float64, lanes: int | None = None) -> np.ndarray:
        """Zeros of state_shape, or (lanes,) + state_shape."""
        return np.zeros(self.state_shape if lanes is None else (lanes,) + self.state_shape,
                        dtype)

    def layered(self, states: np.ndarray) -> np.ndarray:
        """States (..., *state_shape) viewed as (..., layers, STATE_VECTORS, m)."""
        states = np.asarray(states)
        lead = states.shape[:states.ndim - len(self.state_shape)]
        return states.reshape(lead + self.layered_shape)

    def unlayered(self, states: np.ndarray) -> np.ndarray:
        """States (..., layers, STATE_VECTORS, m) viewed as (..., *state_shape)."""
        states = np.asarray(states)
        return states.reshape(states.shape[:states.ndim - 3] + self.state_shape)

    def hidden_of(self, states: np.ndarray) -> np.ndarray:
        """Every layer's h of states (..., *state_shape): (..., layers, m)."""
        return self.layered(states)[..., 0, :]

    def top_hidden(self, states: np.ndarray) -> np.ndarray:
        """The top layer's h, which the output layer reads: (..., m)."""
        return self.layered(states)[..., -1, 0, :]

    # -- in words ---------------------------------------------------------------------------

    def describe(self) -> str:
        """'the vanilla RNN of 100 units', 'a GRU of 2 layers of 256 units', 'an LSTM of 2
        layers of 128 units, dropout 0.2 between them', '..., dropout 0.2 between them and 0.3
        on the output'."""
        if self.assignment and not self.output_dropout:
            return f"the {self.title} of {self.hidden} units"
        units = (f"{self.layers} layers of {self.hidden} units" if self.layers > 1 else
                 f"{self.hidden} units")
        dropped = ([f"{self.dropout:g} between them"] if self.dropout else []) + \
            ([f"{self.output_dropout:g} on the output"] if self.output_dropout else [])
        dropout = f", dropout {' and '.join(dropped)}" if dropped else ""
        article = "an" if self.title[0] in "AEFHILMNORSX" else "a"   # as the letters sound
        return f"{article} {self.title} of {units}{dropout}"

    def summary(self) -> str:
        """A table cell's worth: 'GRU, 2 layers, m = 256, K = 65', 'vanilla RNN, m = 100,
        K = 65'."""
        layers = f", {self.layers} layers" if self.layers > 1 else ""
        dropout = f", dropout {self.dropout:g}" if self.dropout else ""
        if self.output_dropout:
            dropout += f", output dropout {self.output_dropout:g}"
        vocab = f", K = {self.vocab}" if self.vocab is not None else ""
        return f"{self.title}{layers}, m = {self.hidden}{vocab}{dropout}"

    def __str__(self) -> str:
        return self.describe()

    def _vocab(self) -> int:
        if self.vocab is None:
            raise ValueError("the network's parameters need its vocabulary size (vocab)")
        return self.vocab


NAMES = tuple(f.name for f in fields(Network))
# Facts added after models were saved: a saved spec without them has their default.
LATER = ("output_dropout",)
# The output layer every network ends in: V (K, m), c (K,).
OUTPUT_LAYER = ("V", "c")
