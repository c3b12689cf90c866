"""How training is shown: the events of train.py rendered for a terminal or a log file."""

from __future__ import annotations

import math
import sys
import time


class ProgressView:
    """Renders training events: a tqdm bar on a terminal, a plain line every PLAIN_EVERY
    seconds otherwise (a log file gets lines, not carriage-return frames), sample blocks and
    evaluation lines."""

    PLAIN_EVERY = 10.0

    def __init__(self, show_bar: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.show_bar = show_bar
        self.plain = show_bar and not _is_terminal(self.stream)
        self.bar = None
        self.total = 0
        self.last_line = -math.inf
        self.evaluated = False

    def __call__(self, event) -> None:
        from . import train as t
        if isinstance(event, t.Started):
            c = event.corpus
            self.total = event.total_updates
            self.write(f"corpus {c['name']}: {c['chars']:,} characters, K={c['K']}; "
                       f"{event.updates_per_epoch:,} updates per epoch; run folder {event.run_dir}")
            if event.network:
                self.write(f"network: {event.network}; backend {event.backend}")
            if self.show_bar and not self.plain:
                from tqdm import tqdm
                self.bar = tqdm(total=event.total_updates, initial=event.iteration,
                                unit="upd", dynamic_ncols=True, smoothing=0.1, file=self.stream)
        elif isinstance(event, t.Progress):
            post = (f"epoch {event.epoch} | smooth loss {event.smooth_loss:.2f} | "
                    f"{event.updates_per_s:,.0f} upd/s | {event.chars_per_s:,.0f} chars/s")
            if event.val_bpc is not None:
                post += f" | val {event.val_bpc:.3f} bpc"
            if self.bar is not None:
                self.bar.n = event.iteration
                self.bar.set_postfix_str(post, refresh=False)
                self.bar.refresh()
            elif self.plain:
                now = time.monotonic()
                if now - self.last_line >= self.PLAIN_EVERY or event.iteration >= self.total:
                    self.last_line = now
                    share = event.iteration / max(self.total, 1)
                    print(f"update {event.iteration:,}/{self.total:,} ({share:.0%}) | {post}",
                          file=self.stream, flush=True)
        elif isinstance(event, t.Planned):                # a time-limited run's length
            self.total = event.total_updates
            if self.bar is not None:
                self.bar.total = event.total_updates
                self.bar.refresh()
        elif isinstance(event, t.Sampled):
            self.write(event.block())
        elif isinstance(event, t.Evaluated):
            cost = "" if self.evaluated else (
                f" ({event.chars:,} held-out characters scored in {event.seconds:.1f} s; "
                "--eval-every and --eval-chars set how often and how many)")
            self.evaluated = True
            self.write(f"iter {event.iteration} , epoch {event.epoch} , validation loss "
                       f"{event.val_loss:.4f} nats/char = {event.val_bpc:.4f} bits/char{cost}")
        elif isinstance(event, t.Finished):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
