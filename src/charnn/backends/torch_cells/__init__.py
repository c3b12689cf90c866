"""Cells the PyTorch backend runs that PyTorch has no module of, one file each, written as
PyTorch's own recurrent modules are called (backends/pytorch.py registers them beside nn.RNN,
nn.LSTM and nn.GRU):

    Module(input_size, hidden_size, num_layers=1, device=None, dtype=None)
    module(input, hx) -> (output, hx_n)
        input (T, B, input_size), or a PackedSequence of it; hx a tuple of (num_layers, B,
        hidden_size) tensors, the state's vectors (h first); output (T, B, hidden_size), the
        top layer's h_t, zero past a lane's length; hx_n each lane's state after its own last
        step
    parameters weight_<name>_l<k> and bias_<name>_l<k>, charnn's W_<name><k> and b_<name><k>
    flatten_parameters()   (nothing to flatten: for the callers of PyTorch's modules)
"""
