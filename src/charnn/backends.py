"""Choosing the code that runs the math: the numpy reference or the compiled kernels.

Both modules offer the same functions (train_updates, total_loss, advance, sample_indices)
with the same arguments and results; see steps.py.
"""

from __future__ import annotations

from types import ModuleType

from .errors import CharnnError


def get_backend(name: str, announce=None, dtype: str = "float64") -> ModuleType:
    """The module that implements `name`: 'numpy' or 'compiled'. The compiled one is built
    for `dtype` on first use on a machine; `announce` is told so before it starts."""
    if name == "numpy":
        from . import steps
        return steps
    if name == "compiled":
        from . import kernels
        import numpy as np
        kernels.ensure_compiled(announce or (lambda message: None), dtypes=(np.dtype(dtype),))
        return kernels
    raise CharnnError(f"--backend {name!r} is unknown; choose compiled or numpy")
