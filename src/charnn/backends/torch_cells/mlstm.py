"""The multiplicative LSTM (networks/mlstm.py) as a PyTorch module, called as nn.LSTM is (see
torch_cells/__init__.py). Per layer k: weight_ih_l{k} (5m, in) with the input's parts m, i, f,
g, o stacked, weight_mh_l{k} (m, m), weight_hm_l{k} (4m, m), bias_ih_l{k} (5m,): charnn's
W_ih{k}, W_mh{k}, W_hm{k}, b_ih{k}.

A step at a time in Python: no fused kernel exists for this cell. The input's projections of
every step come first, in one product per layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence


class MLSTM(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, device=None,
                 dtype=None):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        m, where = hidden_size, {"device": device, "dtype": dtype}
        bound = 1 / math.sqrt(m)                     # PyTorch's recurrent modules' start
        for k in range(num_layers):
            shapes = {"weight_ih": (5 * m, input_size if k == 0 else m),
                      "weight_mh": (m, m), "weight_hm": (4 * m, m), "bias_ih": (5 * m,)}
            for name, shape in shapes.items():
                weight = nn.Parameter(torch.empty(shape, **where))
                nn.init.uniform_(weight, -bound, bound)
                self.register_parameter(f"{name}_l{k}", weight)

    def flatten_parameters(self) -> None:
        pass

    def forward(self, input, hx):
        if isinstance(input, PackedSequence):
            x, lengths = pad_packed_sequence(input)
        else:
            x, lengths = input, None
        T, B = x.shape[:2]
        m = self.hidden_size
        # live[t, b]: step t is inside lane b's window (lanes past it keep their state)
        live = None if lengths is None else \
            (torch.arange(T)[:, None] < lengths[None, :]).to(x.device)[..., None]
        h_all, c_all = hx
        finals_h, finals_c = [], []
        for k in range(self.num_layers):
            W_mh, W_hm = getattr(self, f"weight_mh_l{k}"), getattr(self, f"weight_hm_l{k}")
            ax = x @ getattr(self, f"weight_ih_l{k}").T + getattr(self, f"bias_ih_l{k}")
            h, c = h_all[k], c_all[k]
            outputs = []
            for t in range(T):
                mt = ax[t, :, :m] * (h @ W_mh.T)                     # m_t
                a = ax[t, :, m:] + mt @ W_hm.T                       # the gates i, f, g, o
                i, f, g, o = a.chunk(4, dim=1)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h_new = torch.sigmoid(o) * torch.tanh(c_new)
                if live is not None:
                    h_new = torch.where(live[t], h_new, h)
                    c_new = torch.where(live[t], c_new, c)
                h, c = h_new, c_new
                outputs.append(h if live is None else h * live[t])
            x = torch.stack(outputs)                                 # the next layer's input
            finals_h.append(h)
            finals_c.append(c)
        return x, (torch.stack(finals_h), torch.stack(finals_c))
