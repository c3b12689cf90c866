"""The learning rate of each update, and how long a run given a wall-clock budget is.

The trainer asks learning_rate for the eta of the next update and for the first later update
whose eta may differ, and ends the backend call there: every backend receives one eta per
call and applies the same rate to the same update, however the run is split into calls (a
resumed run included).

    constant   eta for every update (the assignment's)
    cosine     from eta down to min_eta along half a cosine over the updates after the
               warm-up, in at most COSINE_STEPS equal steps of at least MIN_STEP_UPDATES
               updates (eta is held within a step, so that a backend call covers many
               updates: a compiled LSTM or GRU call costs about 19 ms of setting up on top of
               its updates, 7 ms each at m = 256, B = 32)

Either starts with a linear warm-up over the first warmup_updates updates: update t (from 0)
gets eta (t + 1) / warmup_updates.
"""

from __future__ import annotations

import math
import re


SCHEDULES = ("constant", "cosine")
COSINE_STEPS = 1000
MIN_STEP_UPDATES = 50


def learning_rate(schedule: str, eta: float, min_eta: float, warmup: int, update: int,
                  total: int) -> tuple[float, int]:
    """(eta of update number `update`, counted from 0, of a run of `total` updates; the
    first update after it whose eta may differ)."""
    if update < warmup:
        return eta * (update + 1) / warmup, update + 1
    if schedule == "constant":
        return eta, max(total, update + 1)
    span = max(total - warmup, 1)
    step = max(-(-span // COSINE_STEPS), MIN_STEP_UPDATES)   # updates per step
    k = (update - warmup) // step
    progress = min(k * step / span, 1.0)                 # where the step starts, 0 .. 1
    rate = eta - (eta - min_eta) * 0.5 * (1 - math.cos(math.pi * progress))
    return rate, warmup + (k + 1) * step


_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([hms])")


def parse_duration(text: str) -> float:
    """Seconds in '90s', '10m', '1h30m', '1.5h' or a bare number of seconds ('600')."""
    spec = text.strip().lower().replace(" ", "")
    try:
        seconds = float(spec)
    except ValueError:
        parts = _DURATION.findall(spec)
        if not parts or "".join(n + u for n, u in parts) != spec or \
                len({u for _, u in parts}) != len(parts):
            raise ValueError(f"{text!r} is not a duration; give one such as 90s, 10m or "
                             "1h30m") from None
        seconds = sum(float(n) * _UNIT[u] for n, u in parts)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{text!r} is not a duration greater than 0; give one such as 90s, "
                         "10m or 1h30m")
    return seconds


def format_duration(seconds: float) -> str:
    """1h30m, 10m, 90s -> as a person writes them ('1h 30m', '10m', '1m 30s')."""
    whole = round(seconds)
    if abs(seconds - whole) > 1e-9 or whole == 0:
        return f"{seconds:g}s"
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return " ".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v)
