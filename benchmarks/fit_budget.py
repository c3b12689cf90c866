"""The fit behind `charnn train --time-limit T` without network flags (charnn.budget): for
each corpus and budget of benchmarks/bench_budget.py's runs, the candidate that learned most,
the candidate the rule chooses, and the small GPT's loss beside them.

    python benchmarks/fit_budget.py                 # reads results/bench_budget.jsonl
    python benchmarks/fit_budget.py --markdown      # the table as docs/learning.md shows it

The rule's thresholds (charnn/budget.py: LADDER's from_updates, DROPOUT) are set so that it
chooses, in every measured cell, the candidate that measured best, or one within the runs'
noise of it (NOISE); this script says where it does not. The budget enters the rule in updates
of the reference network, at budget.REFERENCE_RATE, the fitting machine's speed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from charnn import budget

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_budget import CANDIDATES, RESULTS  # noqa: E402

NOISE = 0.01          # nats/char: two seeds of one network for 3 minutes differ about this much


def candidate_of(settings: dict) -> str | None:
    """The name of the bench_budget candidate with these settings' network, or None."""
    def key(c: dict) -> tuple:
        return c["layers"], c["hidden"], c["dropout"], c.get("output_dropout", 0.0)
    for name, c in CANDIDATES.items():
        if key(c) == key(settings):
            return name
    return None


def in_words(name: str) -> str:
    """A candidate's network: 'GRU 2 x 256, dropout 0.2', '..., dropout 0.3 + 0.3 on the
    output'."""
    c = CANDIDATES[name]
    output = c.get("output_dropout", 0.0)
    return f"GRU {c['layers']} × {c['hidden']}" + (f", dropout {c['dropout']:g}"
                                                  if c["dropout"] else "") + \
        (f" + {output:g} on the output" if output else "")


def cells(runs: list[dict]) -> dict:
    """{(corpus, minutes): {candidate: run}}, the last run of each candidate in each cell."""
    table: dict = {}
    for r in runs:
        table.setdefault((r["corpus"], r["minutes"]), {})[r["candidate"]] = r
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    runs = [json.loads(line) for line in args.results.read_text().splitlines() if line]
    misses, rows = 0, []
    for (corpus, minutes), by_name in sorted(cells(runs).items(),
                                             key=lambda kv: (kv[0][0] != "full", kv[0][1])):
        ours = {n: r for n, r in by_name.items() if n != "gpt"}
        if not ours:
            continue
        best = min(ours, key=lambda n: ours[n]["nats"])
        train_chars = ours[best]["corpus_chars"] - ours[best]["held_out"]
        choice = budget.choose(60 * minutes, train_chars, budget.REFERENCE_RATE)
        chosen = candidate_of(choice.settings)
        measured = ours.get(chosen)
        ok = measured is not None and measured["nats"] <= ours[best]["nats"] + NOISE
        misses += not ok
        gpt = by_name.get("gpt")
        rows.append(dict(corpus=corpus, minutes=minutes, best=best, nats=ours[best]["nats"],
                         chosen=chosen or "(not a candidate)",
                         chosen_nats=measured["nats"] if measured else None,
                         gpt=gpt["nats"] if gpt else None, ok=ok,
                         tried="; ".join(f"{in_words(n)}: {r['nats']:.3f}" for n, r in
                                         sorted(ours.items(), key=lambda kv: kv[1]["nats"]))))
    if args.markdown:
        print("| text | budget | the rule's network | held-out nats/char | small GPT | ahead by "
              "| every candidate tried |")
        print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
        for r in rows:
            nats = r["chosen_nats"]
            ahead = (f"{r['gpt'] - nats:+.3f}" if r["gpt"] is not None and nats is not None
                     else "—")
            gpt = "—" if r["gpt"] is None else f"{r['gpt']:.3f}"
            ours = "—" if nats is None else f"{nats:.3f}"
            text = "bundled" if r["corpus"] == "full" else "1 MB slice"
            chosen = in_words(r["chosen"]) if r["chosen"] in CANDIDATES else r["chosen"]
            print(f"| {text} | {r['minutes']:g} min | {chosen} | {ours} | {gpt} | "
                  f"{ahead} | {r['tried']} |")
    else:
        for r in rows:
            print(f"{r['corpus']:>4} {r['minutes']:>4g} min: best {r['best']} {r['nats']:.4f}; "
                  f"the rule chooses {r['chosen']}"
                  + (f" ({r['chosen_nats']:.4f})" if r["chosen_nats"] is not None else
                     " (not measured)")
                  + (f"; GPT {r['gpt']:.4f}" if r["gpt"] is not None else "")
                  + ("" if r["ok"] else "  <- the rule misses the best"))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
