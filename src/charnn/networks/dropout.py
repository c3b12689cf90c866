"""Dropout masks between stacked layers and on the top layer's output, drawn from a
counter-based hash.

Unit j of layer l at step t of lane `lane` in update `update` is kept when

    u = mix(mix(mix(mix(mix(seed_lo, seed_hi), update), lane), l), t * m + j)  >=  floor(p 2^32)

with mix(a, b) = fmix32(a xor (b * 0x9E3779B9 + 0x7F4A7C15)) in 32-bit unsigned arithmetic
(fmix32 is MurmurHash3's finaliser). Each draw depends only on its coordinates, never on the
order of the draws, so every backend (numpy here, the compiled kernels, PyTorch on a GPU) and
every split of the updates into calls or processes draws the same masks, without generating
them in one place and shipping them around.
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint32(0x9E3779B9)       # the counter's multiplier (2^32 / the golden ratio)
OFFSET = np.uint32(0x7F4A7C15)
_M32 = 0xFFFFFFFF


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser: every input bit flips each output bit with probability
    about 1/2. h: uint32 (array or scalar); the products wrap modulo 2^32."""
    h = np.asarray(h, np.uint32)
    with np.errstate(over="ignore"):                    # numpy warns of wrapping on scalars
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))


def mix(a, b) -> np.ndarray:
    """One link of the hash chain: a (the key so far) combined with the counter b."""
    with np.errstate(over="ignore"):
        return fmix32(np.asarray(a, np.uint32) ^ (np.asarray(b, np.uint32) * GOLDEN + OFFSET))


def lane_key(seed: int, update: int, lane: int, layer: int) -> np.uint32:
    """The key of one lane's mask below layer + 1 in one update (every counter modulo 2^32)."""
    key = mix(seed & _M32, (seed >> 32) & _M32)
    for counter in (update, lane, layer):
        key = mix(key, counter & _M32)
    return np.uint32(key)


def keep_threshold(p: float) -> int:
    """u (uniform on 0 .. 2^32 - 1) is kept when u >= this: with probability 1 - p to within
    2^-32."""
    return int(np.floor(p * 2.0 ** 32))


def dropout_masks(p: float, tau: int, m: int, layers: int, key: tuple[int, int, int],
                  dtype=np.float64, output: float = 0.0) -> list[np.ndarray] | None:
    """Masks for dropout with probability p between stacked layers and `output` on the top
    layer's output, for a window of tau steps of one lane: arrays (tau, m) of 0 (dropped) and
    1 / (1 - p) (kept, scaled so the expected input is unchanged). Mask l multiplies layer l's
    h_t on its way into layer l + 1: layers - 1 masks (all ones where p == 0 and output is
    not), then, when output > 0, mask layers - 1 on the top's h_t on its way into the output
    layer (char-rnn drops there too). key = (seed, update, lane): the run's seed, the update's
    number (from 1) and the lane. None when there is nothing to drop."""
    for q in (p, output):
        if not 0 <= q < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {q}")
    between = p > 0 and layers > 1
    if not between and output == 0:
        return None
    seed, update, lane = key
    counters = np.arange(tau * m, dtype=np.uint32).reshape(tau, m)      # t * m + j

    def mask(l: int, q: float) -> np.ndarray:
        if q == 0:
            return np.ones((tau, m), dtype)
        threshold, scale = np.uint32(keep_threshold(q)), 1 / (1 - q)
        return ((mix(lane_key(seed, update, lane, l), counters) >= threshold) * scale
                ).astype(dtype)

    masks = [mask(l, p) for l in range(layers - 1)]
    if output > 0:
        masks.append(mask(layers - 1, output))
    return masks
