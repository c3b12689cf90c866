"""The PyTorch backend: charnn's networks on PyTorch's RNN modules, on a CPU, a CUDA GPU (cuDNN)
or Apple's MPS, and across processes with torch.distributed.

The math is the reference's (backends/__init__.py names it), module for module:

    rnn    nn.RNN(tanh): W_ih{l}, W_hh{l}, b_ih{l} are weight_ih_l{l}, weight_hh_l{l},
           bias_ih_l{l}; the module's second bias bias_hh_l{l} is held at zero and never
           trained (charnn's RNN cell has one bias)
    lstm   nn.LSTM, gru  nn.GRU: W_ih{l}, W_hh{l}, b_ih{l}, b_hh{l} are weight_ih_l{l},
           weight_hh_l{l}, bias_ih_l{l}, bias_hh_l{l}, gates in the same order (networks/ took
           PyTorch's layout on purpose)
    mlstm  torch_cells/mlstm.py, a module called as nn.LSTM is: W_<x>{l} is weight_<x>_l{l},
           b_<x>{l} bias_<x>_l{l}, the rule for every cell
    output nn.Linear(m, K): weight = V, bias = c; the character enters as a one-hot vector, so
           W_ih0 x is the character's column, as in the reference

Without dropout between them the stacked layers run as one fused module (one cuDNN call on a
GPU). With it each layer is its own module and its output is multiplied by charnn's mask
(networks/dropout.py, the same counter-based hash computed here with integer tensors), not by
the fused module's own dropout, whose random draws no other backend could repeat. Dropout on
the top's output multiplies the last layer's output by its mask the same way.

Loss: -log p summed over each window, averaged over the lanes that have one; windows shorter
than the longest of an update are packed (pack_padded_sequence), so that each lane's carried
state is the one after its own last character. Gradients are clipped elementwise and handed
to charnn's update rules (optim.py), written below with torch._foreach_* ops. How they differ
from torch.optim:

    AdaGrad  torch.optim.Adagrad divides by sqrt(sum g^2) + eps (eps 1e-10); charnn by
             sqrt(sum g^2 + eps) (eps 1e-8): eps inside the root.
    RMSProp  torch.optim.RMSprop divides by sqrt(v) + eps, with alpha 0.99 by default; charnn by
             sqrt(v + eps), gamma 0.9: eps inside the root.
    Adam     the same rule as torch.optim.Adam (bias-corrected, eps outside the root); written
             here too so that the three rules share one state layout, charnn's checkpoint's.

Where parameters live: a training run opens a TorchSession (open_session), which copies the
parameters, the optimiser's state and the lanes' states to the device once and keeps them there
across the trainer's calls; session.sync() copies them back into the trainer's numpy arrays,
which the trainer asks for only before it evaluates, samples, saves or keeps a best model. The
module-level functions (train_updates, total_loss, loss_and_gradients) take numpy arrays as
every backend does and copy them over on each call.

Several processes (torchrun): each process trains its share of the lanes, the gradients are
summed by DistributedDataParallel's all-reduce (over every lane of the global batch, divided
by the number of lanes active in the whole batch, so the update is the one-process update), and
sync() gathers every lane's state into each process's h, which a checkpoint holds whole.

Sampling runs the network a character at a time on the device (where a big model's step is
far faster than numpy's) and draws each character on the host with the reference's own
filtering and inverse CDF, so that the same logits give the same draw.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .. import distributed, optim
from ..errors import SettingError, setting
from ..layout import torch_name
from ..model import Params
from ..networks import dropout as charnn_dropout
from ..networks import Network
from . import BACKENDS
from .calls import NO_DROPOUT, Dropout, Optimiser, Windows
from .torch_cells.mlstm import MLSTM

# Each cell's PyTorch module: PyTorch's own, or one of torch_cells/ called as they are.
TORCH_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "mlstm": MLSTM}
NETWORKS = tuple(TORCH_CELLS)
DTYPES = ("float64", "float32")
DEVICES = ("auto", "cpu", "cuda", "mps")

# total_loss: segments scored side by side, and characters per forward call
EVAL_LANES = 256
EVAL_CHUNK = 1024

_M32 = 0xFFFFFFFF
_default_device = "auto"


def _reference():
    """The numpy reference backend (sampling and advancing run there)."""
    return importlib.import_module(BACKENDS["numpy"])


# -- devices ------------------------------------------------------------------------------

def resolve_device(name: str = "auto", dtype: str = "float64") -> torch.device:
    """The torch.device --device `name` stands for (auto: CUDA when PyTorch sees a GPU, else
    the CPU); under torchrun, the GPU of this process's local rank."""
    if name not in DEVICES:
        raise SettingError(f"{setting('device')} {name!r} is unknown; choose one of "
                           f"{', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "no GPU visible"
            raise SettingError(f"{setting('device')} cuda: PyTorch {torch.__version__} sees no "
                               f"CUDA GPU ({build}); give {setting('device')} cpu, or install "
                               "PyTorch's CUDA build")
        # float32 means float32: cuDNN's RNNs would otherwise round their products' inputs to
        # TF32 (a 10-bit mantissa), which put 30 updates of an LSTM 5e-3 away from the same
        # run in float32 on a CPU
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        index = distributed.local_rank() % torch.cuda.device_count()
        return torch.device("cuda", index)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SettingError(f"{setting('device')} mps: PyTorch sees no Apple GPU here; give "
                               f"{setting('device')} cpu")
        if np.dtype(dtype) == np.float64:
            raise SettingError(f"{setting('device')} mps has no float64; give {setting('dtype')} "
                               "float32")
        return torch.device("mps")
    return torch.device("cpu")


def use_device(name: str) -> None:
    """The device the module-level functions (total_loss, loss_and_gradients) run on."""
    global _default_device
    _default_device = name


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# -- the network as PyTorch modules -------------------------------------------------------

class CharNet(nn.Module):
    """One of charnn's networks as PyTorch modules, its parameters reachable by charnn's names
    (self.named[name]). run(x, state, lengths, masks) runs a window: x (T, B) character
    indices; state (B, layers, S, m) in charnn's layout (forward: in PyTorch's); lengths None (every lane runs all T
    steps) or a CPU int64 tensor (B,) of each lane's steps (at least 1); masks None or
    dropout_masks' tensors (T, B, m), layers - 1 between the layers and then, when there are
    layers of them, the top's output's. Returns the logits (T, B, K), zero past a lane's length,
    and each lane's state after its own last step."""

    def __init__(self, spec: Network, per_layer: bool, **where):
        super().__init__()
        K, m, layers = spec.vocab, spec.hidden, spec.layers
        self.spec, self.K, self.m, self.layers_count = spec, K, m, layers
        module = TORCH_CELLS[spec.cell]
        if per_layer and layers > 1:
            self.rnns = nn.ModuleList(module(K if l == 0 else m, m, **where)
                                      for l in range(layers))
        else:
            self.rnns = nn.ModuleList([module(K, m, num_layers=layers, **where)])
        self.out = nn.Linear(m, K, **where)
        self.named: dict[str, nn.Parameter] = {}
        for name in spec.param_names:
            if name in ("V", "c"):
                continue
            theirs, l = torch_name(name).rsplit("_l", 1)            # weight_ih, 0
            l = int(l)
            rnn, k = (self.rnns[l], 0) if len(self.rnns) > 1 else (self.rnns[0], l)
            self.named[name] = getattr(rnn, f"{theirs}_l{k}")
        self.named["V"], self.named["c"] = self.out.weight, self.out.bias
        # what the module has and charnn's cell has not (nn.RNN's second bias): zero, frozen
        ours = {id(p) for p in self.named.values()}
        self.unused = [p for rnn in self.rnns for p in rnn.parameters() if id(p) not in ours]
        for p in self.unused:
            p.requires_grad_(False)

    @classmethod
    def of(cls, params: Params, per_layer: bool, device: torch.device) -> "CharNet":
        net = cls(Network.of_params(params), per_layer, device=device,
                  dtype=_torch_dtype(params.dtype))
        net.load(params)
        return net

    def load(self, params: Params) -> None:
        with torch.no_grad():
            for name, p in self.named.items():
                p.copy_(torch.from_numpy(np.ascontiguousarray(params[name])))
            for p in self.unused:
                p.zero_()
        for rnn in self.rnns:
            rnn.flatten_parameters()

    def trainable(self, names) -> list[nn.Parameter]:
        return [self.named[name] for name in names]

    def forward(self, x, hx, lengths=None, masks=None):
        """The window in PyTorch's layout: hx a tuple of (layers, B, m) tensors, (h, c) for the
        LSTM, (h,) otherwise; returns (logits, the new hx)."""
        T, B = x.shape
        inp = F.one_hot(x, self.K).to(hx[0].dtype)           # (T, B, K)
        if len(self.rnns) == 1:
            out, hn = self.rnns[0](self._pack(inp, lengths), self._hidden(hx))
            finals = [hn]
        else:
            finals = []
            for l, rnn in enumerate(self.rnns):
                out, hn = rnn(self._pack(inp, lengths), self._hidden(tuple(t[l:l + 1]
                                                                         for t in hx)))
                finals.append(hn)
                if l < self.layers_count - 1:
                    inp = self._unpack(out, T)
                    if masks is not None:
                        inp = inp * masks[l]                 # dropout between layers
        top = self._unpack(out, T)                           # (T, B, m), zero past a length
        if masks is not None and len(masks) == self.layers_count:
            top = top * masks[-1]                            # dropout on the top's output
        finals = [hn if isinstance(hn, tuple) else (hn,) for hn in finals]
        new = tuple(torch.cat(parts, dim=0) for parts in zip(*finals))
        return self.out(top), new

    def run(self, x, state, lengths=None, masks=None):
        """forward with states in charnn's layout (B, layers, S, m)."""
        logits, hx = self(x, to_native(state), lengths, masks)
        return logits, from_native(hx)

    def _hidden(self, hx):
        return hx if self.spec.state_vectors > 1 else hx[0]       # the LSTM's (h, c)

    @staticmethod
    def _pack(inp, lengths):
        if lengths is None:
            return inp
        return pack_padded_sequence(inp, lengths, enforce_sorted=False)

    @staticmethod
    def _unpack(out, T):
        if isinstance(out, torch.Tensor):
            return out
        return pad_packed_sequence(out, total_length=T)[0]


def _torch_dtype(dtype) -> torch.dtype:
    return {np.float64: torch.float64, np.float32: torch.float32}[np.dtype(dtype).type]


def to_native(state: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """States (B, layers, S, m) as PyTorch's modules hold them: S tensors (layers, B, m)."""
    return tuple(state[:, :, s].transpose(0, 1).contiguous() for s in range(state.shape[2]))


def from_native(hx) -> torch.Tensor:
    return torch.stack(hx, dim=2).transpose(0, 1)


# -- dropout masks: networks/dropout.py's hash with integer tensors ---------------------------

def _mul32(a: torch.Tensor, c: int) -> torch.Tensor:
    """a * c modulo 2^32 for a in [0, 2^32) (int64) and a constant c < 2^32, without an
    intermediate past 2^49 (so no int64 overflow on any device)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (a * lo + (((a * hi) & 0xFFFF) << 16)) & _M32


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _mix(a, b) -> torch.Tensor:
    """dropout.mix: fmix32(a xor (b * golden + offset)), a and b tensors or ints."""
    if isinstance(b, torch.Tensor):
        b = (_mul32(b, int(charnn_dropout.GOLDEN)) + int(charnn_dropout.OFFSET)) & _M32
    else:
        b = (b * int(charnn_dropout.GOLDEN) + int(charnn_dropout.OFFSET)) & _M32
    return _fmix32(a ^ b) if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) \
        else int(charnn_dropout.fmix32(a ^ b))


def dropout_masks(dropout: Dropout, T: int, m: int, layers: int, update: int,
                  lanes: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor] | None:
    """dropout.dropout_masks for the lanes `lanes` (global lane numbers, int64 on the device)
    of update `update`, as tensors (T, lanes, m) on the lanes' device: layers - 1 between the
    layers, then the top's when dropout.output > 0; None when nothing is dropped."""
    if not (dropout.p > 0 and layers > 1 or dropout.output > 0):
        return None
    seed = dropout.seed
    key = _mix(seed & _M32, (seed >> 32) & _M32)
    key = _mix(key, update & _M32)
    lane_keys = _mix(torch.full_like(lanes, key), lanes & _M32)           # (B,)
    counters = torch.arange(T * m, device=lanes.device, dtype=torch.int64)  # t * m + j

    def mask(l: int, q: float) -> torch.Tensor:
        if q == 0:
            return torch.ones((T, len(lanes), m), dtype=dtype, device=lanes.device)
        threshold, scale = charnn_dropout.keep_threshold(q), 1 / (1 - q)
        u = _mix(_mix(lane_keys, l)[:, None], counters[None, :])           # (B, T m)
        keep = (u >= threshold).to(dtype) * scale
        return keep.view(-1, T, m).transpose(0, 1)

    masks = [mask(l, dropout.p) for l in range(layers - 1)]
    if dropout.output > 0:
        masks.append(mask(layers - 1, dropout.output))
    return masks


# -- charnn's update rules (optim.py) with foreach ops ---------------------------------------

@torch.no_grad()
def clip_(grads: list[torch.Tensor], clip: float) -> None:
    torch._foreach_clamp_min_(grads, -clip)
    torch._foreach_clamp_max_(grads, clip)


@torch.no_grad()
def step_(optimizer: str, params: list, grads: list, slots: dict[str, list], eta: float,
          t: int) -> None:
    """optim.step_ on tensors: update number t (from 1) of `optimizer`."""
    if optimizer in ("adagrad", "rmsprop"):
        m = slots["m"]
        if optimizer == "adagrad":
            torch._foreach_addcmul_(m, grads, grads)                      # m += g^2
        else:
            torch._foreach_mul_(m, optim.RMSPROP_GAMMA)                   # m = gm + (1-g) g^2
            torch._foreach_addcmul_(m, grads, grads, value=1 - optim.RMSPROP_GAMMA)
        denom = torch._foreach_add(m, optim.EPS)                          # sqrt(m + eps)
        torch._foreach_sqrt_(denom)
        torch._foreach_addcdiv_(params, grads, denom, value=-eta)
    elif optimizer == "adam":
        m, v = slots["m"], slots["v"]
        b1, b2 = optim.ADAM_BETA1, optim.ADAM_BETA2
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        denom = torch._foreach_div(v, 1 - b2 ** t)                        # sqrt(v_hat) + eps
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, optim.EPS)
        torch._foreach_addcdiv_(params, m, denom, value=-eta / (1 - b1 ** t))
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")


# -- a training session: everything on the device between the trainer's calls ---------------

class TorchSession:
    """The trainer's parameters, optimiser state and lanes' states, kept on the device.

    Opened on the trainer's numpy arrays, which it copies once; train_updates takes the same
    arguments as the module-level function (the arrays must be the ones it was opened on, and
    stay untouched by their owner until sync); sync() writes the device's values back into
    them. Under torchrun this process trains lanes self.lanes of every update's batch."""

    def __init__(self, params: Params, optimizer: str, opt_state: dict, h: np.ndarray,
                 device: str = "auto", dropout: Dropout = NO_DROPOUT):
        self.params, self.optimizer, self.opt_state, self.h = params, optimizer, opt_state, h
        self.device = resolve_device(device, params.dtype.name)
        self.world, self.rank = distributed.world_size(), distributed.rank()
        B = h.shape[0]
        if self.world > B:
            raise SettingError(f"{self.world} processes cannot share {setting('batch_size')} "
                               f"{B}: each needs a lane; run {B} processes or fewer (a run's "
                               "batch size is fixed)")
        self.group = distributed.init_process_group(self.device.type)
        self.lanes = np.array_split(np.arange(B), self.world)[self.rank]
        self.lanes_t = torch.from_numpy(self.lanes).to(self.device)
        self.net = CharNet.of(params, per_layer=dropout.p > 0, device=self.device)
        self.names = [n for n, _ in params.items()]
        self.train_params = self.net.trainable(self.names)
        self.slots = {slot: [torch.from_numpy(np.ascontiguousarray(
            opt_state[f"{slot}_{name}"])).to(self.device) for name in self.names]
            for slot in optim.STATE_SLOTS[optimizer]}
        self.hx = to_native(torch.from_numpy(np.ascontiguousarray(
            self.net.spec.layered(h)[self.lanes])).to(self.device))
        self.model = self.net
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            self.model = DistributedDataParallel(               # (the net has no buffers)
                self.net, device_ids=[self.device] if self.device.type == "cuda" else None)

    # the trainer's calls

    def train_updates(self, params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                      dropout: Dropout = NO_DROPOUT) -> np.ndarray:
        if params is not self.params or optimiser.state is not self.opt_state or \
                h is not self.h or optimiser.rule != self.optimizer:
            raise ValueError("a TorchSession trains the arrays it was opened on")
        w = windows
        batch = self._upload(w.data, w.starts, w.lengths, w.resets, w.first, w.last)
        losses = []
        for k in range(w.count):
            update = optimiser.step + k + 1
            loss = self._forward_backward(batch, k, update, dropout)
            clip_(self._grads(), optimiser.clip)
            step_(optimiser.rule, self.train_params, self._grads(), self.slots, optimiser.eta,
                  update)
            for p in self.train_params:
                p.grad = None
            losses.append(loss)
        if not losses:
            return np.empty(0)
        total = torch.stack(losses)
        if self.world > 1:                                  # every rank's lanes' losses
            torch.distributed.all_reduce(total, group=self.group)
        return total.double().cpu().numpy() / batch["active"]

    def update_gradients(self, data, starts, lengths, resets, update,
                         dropout: Dropout = NO_DROPOUT):
        """One update's forward and backward (starts, lengths, resets: that update's rows):
        leaves the gradient of the batch's loss in the parameters' .grad, carries the lanes'
        states, and returns (this process's summed loss, the batch's active lanes)."""
        batch = self._upload(data, np.asarray(starts)[None], np.asarray(lengths)[None],
                             np.asarray(resets)[None], 0, 1)
        return self._forward_backward(batch, 0, update, dropout), \
            int(batch["active"][0])

    def _upload(self, data, starts, lengths, resets, first, last) -> dict:
        """The windows of updates first..last-1 for this process's lanes, copied to the device
        in one go (a copy per update would hold the host back until the device caught up)."""
        every = np.asarray(lengths[first:last])
        L = every[:, self.lanes]                                         # (n, lanes)
        T = max(int(L.max()) if L.size else 0, 1)
        idx = np.minimum(np.asarray(starts[first:last])[:, self.lanes, None] + np.arange(T + 1),
                         len(data) - 1)
        resets = (np.asarray(resets[first:last])[:, self.lanes] != 0) & (L > 0)
        windows = np.ascontiguousarray(data[idx], dtype=np.int64)      # (n, lanes, T + 1)
        return {"L": L, "windows": torch.from_numpy(windows).to(self.device),
                "any_reset": resets.any(axis=1),
                "lengths": torch.from_numpy(L.astype(np.int64)).to(self.device),
                "resets": torch.from_numpy(resets).to(self.device),
                "active": np.maximum((every > 0).sum(axis=1), 1)}   # the whole batch's

    def _forward_backward(self, batch, k: int, update: int, dropout: Dropout):
        """Update k of the batch: the gradient of the loss summed over every active lane of
        the global batch (all processes') and divided by their number, left in .grad; the
        lanes' states carried; returns this process's summed loss (0-d, on the device)."""
        L = batch["L"][k]
        T = max(int(L.max()) if L.size else 0, 1)
        window = batch["windows"][k, :, :T + 1].T                         # (T + 1, lanes)
        hx = self.hx
        if batch["any_reset"][k]:
            hx = tuple(torch.where(batch["resets"][k].view(1, -1, 1), 0, t) for t in hx)
        full = bool((L == T).all())
        lengths = None if full else torch.from_numpy(np.maximum(L, 1).astype(np.int64))
        masks = dropout_masks(dropout, T, self.net.m, self.net.layers_count, update,
                              self.lanes_t, hx[0].dtype)
        logits, new = self.model(window[:-1], hx, lengths, masks)
        nll = F.cross_entropy(logits.reshape(-1, self.net.K), window[1:].reshape(-1),
                              reduction="none").view(T, -1)
        if not full:                                         # positions past a lane's window
            inside = torch.arange(T, device=self.device)[:, None] < batch["lengths"][k][None, :]
            nll = torch.where(inside, nll, 0)
        loss = nll.sum()
        # DistributedDataParallel averages over the processes: scaled by their number, the
        # sum over every active lane of the batch divided by how many there are
        (loss * (self.world / int(batch["active"][k]))).backward()
        if (L > 0).all():
            self.hx = tuple(t.detach() for t in new)
        else:                                                # lanes sitting out keep theirs
            runs = (batch["lengths"][k] > 0).view(1, -1, 1)
            self.hx = tuple(torch.where(runs, t.detach(), old) for t, old in zip(new, hx))
        return loss.detach()

    def sync(self) -> None:
        """Copy the parameters, the optimiser state and every lane's state (gathered from
        all processes) into the numpy arrays the session was opened on."""
        with torch.no_grad():
            for name, p in zip(self.names, self.train_params):
                np.copyto(self.params[name], p.detach().cpu().numpy())
            for slot, tensors in self.slots.items():
                for name, t in zip(self.names, tensors):
                    np.copyto(self.opt_state[f"{slot}_{name}"], t.cpu().numpy())
            state = from_native(self.hx)
            if self.world > 1:
                full = torch.zeros((self.h.shape[0],) + tuple(state.shape[1:]),
                                   dtype=state.dtype, device=self.device)
                full[self.lanes_t] = state
                torch.distributed.all_reduce(full, group=self.group)
                state = full
            np.copyto(self.h, state.cpu().numpy().reshape(self.h.shape))

    def agree(self, stop: int, updates: int) -> tuple[int, int]:
        """What every process does next: the largest stop verdict any gives (0 go on; the
        trainer's TIME_UP and STOP_REQUESTED), and the fewest updates any proposes for the
        next call (the processes step in lockstep)."""
        if self.world == 1:
            return stop, updates
        where = self.device if self.device.type == "cuda" else torch.device("cpu")
        votes = torch.tensor([int(stop), -updates], dtype=torch.int64, device=where)
        torch.distributed.all_reduce(votes, op=torch.distributed.ReduceOp.MAX,
                                     group=self.group)
        return int(votes[0]), int(-votes[1])

    def close(self) -> None:
        if self in _open_sessions:
            _open_sessions.remove(self)
        _synchronize(self.device)
        distributed.destroy_process_group(self.group)

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.train_params]


def open_session(params: Params, optimizer: str, opt_state: dict, h: np.ndarray,
                 device: str = "auto", dropout: Dropout = NO_DROPOUT) -> TorchSession:
    """A TorchSession on these arrays. While it is open, total_loss, advance and
    sample_indices given these very params run on the session's device copy, which the
    trainer syncs before it calls them, instead of copying the parameters over again."""
    use_device(device)
    session = TorchSession(params, optimizer, opt_state, h, device, dropout)
    _open_sessions.append(session)
    return session


_open_sessions: list[TorchSession] = []


def _net_for(params: Params) -> tuple[CharNet, torch.device]:
    """A CharNet of `params`: the open session's, when it holds these params, else a new one
    on the module's device."""
    for session in _open_sessions:
        if session.params is params:
            return session.net, session.device
    device = resolve_device(_default_device, params.dtype.name)
    return CharNet.of(params, per_layer=False, device=device), device


# -- the Backend protocol's functions, on numpy arrays -----------------------------------------

def train_updates(params: Params, optimiser: Optimiser, h: np.ndarray, windows: Windows,
                  dropout: Dropout = NO_DROPOUT) -> np.ndarray:
    """The reference's train_updates (same arguments, same arrays changed in place), through a
    session opened and synced for this one call."""
    session = TorchSession(params, optimiser.rule, optimiser.state, h, _default_device,
                           dropout)
    try:
        losses = session.train_updates(params, optimiser, h, windows, dropout)
        session.sync()
    finally:
        session.close()
    return losses


@torch.no_grad()
def total_loss(params: Params, data: np.ndarray, segments: np.ndarray,
               h0: np.ndarray | None = None) -> tuple[float, int]:
    """The reference's total_loss: segments scored side by side, EVAL_LANES at a time, in
    chunks of EVAL_CHUNK characters that carry the state."""
    net, device = _net_for(params)
    shape = net.spec.state_shape
    segments = np.asarray(segments, np.int64).reshape(-1, 2)
    if h0 is not None:
        h0 = np.asarray(h0)
        if h0.shape != shape and h0.shape != (len(segments),) + shape:
            raise ValueError(f"h0 must have shape {(len(segments),) + shape} or {shape}, "
                             f"not {h0.shape}")
    scored = np.flatnonzero(segments[:, 1] - segments[:, 0] >= 2)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for group in np.array_split(scored, max(1, math.ceil(len(scored) / EVAL_LANES))):
        if not len(group):
            continue
        begin, end = segments[group, 0], segments[group, 1]
        if h0 is None:
            state = np.zeros((len(group),) + shape, params.dtype)
        elif h0.shape == shape:
            state = np.broadcast_to(h0, (len(group),) + shape).astype(params.dtype)
        else:
            state = h0[group].astype(params.dtype)
        state = torch.from_numpy(np.ascontiguousarray(net.spec.layered(state))).to(device)
        remaining = end - begin - 1                          # characters predicted
        count += int(remaining.sum())
        for offset in range(0, int(remaining.max()), EVAL_CHUNK):
            L = np.clip(remaining - offset, 0, EVAL_CHUNK)
            T = int(L.max())
            idx = np.minimum(begin[:, None] + offset + np.arange(T + 1), len(data) - 1)
            window = torch.from_numpy(np.ascontiguousarray(data[idx])).to(device).long().T
            full = bool((L == T).all())
            lengths = None if full else torch.from_numpy(np.maximum(L, 1).astype(np.int64))
            logits, new_state = net.run(window[:-1], state, lengths)
            nll = F.cross_entropy(logits.reshape(-1, net.K), window[1:].reshape(-1),
                                  reduction="none").view(T, -1)
            if not full:
                inside = torch.arange(T, device=device)[:, None] < \
                    torch.from_numpy(L).to(device)[None, :]
                nll = torch.where(inside, nll, 0)
            total += nll.sum(dtype=torch.float64)
            runs = torch.from_numpy(L > 0).to(device).view(-1, 1, 1, 1)
            state = torch.where(runs, new_state, state)
    return float(total), count


def loss_and_gradients(params: Params, inputs: np.ndarray, targets: np.ndarray,
                       h_prev: np.ndarray):
    """One sequence from h_prev (the network's state shape, networks.state_shape): (loss,
    gradients as Params, the last state), as the reference's; no dropout."""
    device = resolve_device(_default_device, params.dtype.name)
    net = CharNet.of(params, per_layer=False, device=device)
    x = torch.from_numpy(np.asarray(inputs, np.int64)).to(device)
    y = torch.from_numpy(np.asarray(targets, np.int64)).to(device)
    h_prev = np.asarray(h_prev, params.dtype)
    state = torch.from_numpy(np.ascontiguousarray(net.spec.layered(h_prev[None]))).to(device)
    logits, last = net.run(x[:, None], state)
    loss = F.cross_entropy(logits[:, 0], y, reduction="sum")
    loss.backward()
    grads = Params({name: net.named[name].grad.detach().cpu().numpy().copy()
                    for name, _ in params.items()})
    return float(loss.detach()), grads, last.detach().cpu().numpy().reshape(h_prev.shape)


def _device_state(net: CharNet, h: np.ndarray, device) -> torch.Tensor:
    h = np.asarray(h)
    return torch.from_numpy(np.ascontiguousarray(net.spec.layered(h[None]))).to(device)


@torch.no_grad()
def advance(params: Params, h: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """The state after feeding `inputs` to the network from h (the reference's advance)."""
    inputs = np.asarray(inputs, np.int64)
    if not len(inputs):
        return np.array(h, copy=True)
    net, device = _net_for(params)
    _, state = net.run(torch.from_numpy(inputs).to(device)[:, None], _device_state(net, h, device))
    return state.cpu().numpy().reshape(np.shape(h)).astype(params.dtype)


@torch.no_grad()
def sample_indices(params: Params, h: np.ndarray, x: int, uniforms: np.ndarray,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   greedy: bool = False, stop_index: int = -1) -> np.ndarray:
    """The reference's sample_indices: each step of the network on the device, the logits
    filtered and drawn from on the host by the reference's own code (filtered_probabilities,
    inverse CDF), so that a draw is the reference's draw from the same logits."""
    reference = _reference()
    net, device = _net_for(params)
    state = _device_state(net, h, device)
    drawn = []
    for u in uniforms:
        logits, state = net.run(torch.tensor([[x]], device=device), state)
        o = logits[0, 0].cpu().numpy()
        if greedy:
            x = int(np.argmax(o))
        else:
            cdf = np.cumsum(reference.filtered_probabilities(o, temperature, top_k, top_p))
            x = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(cdf) - 1)
        drawn.append(x)
        if x == stop_index:
            break
    h[...] = state.cpu().numpy().reshape(h.shape)
    return np.array(drawn, dtype=np.int64)
