"""Development comparison of combiners for the word-rank test (issue 10): Fisher's product vs the
truncated product (tau 0.01, 0.05, 0.1), recomputed from the per-position counts `at_or_above` that study
results store (p_j = at_or_above / V). Members vs controls, detection at p < alpha.

The combiner of each mode was chosen from this table on the development runs (docs/survival/study-none,
docs/survival/study-pipeline) BEFORE any published run; see docs/statistics.md, section 2b.

    python scripts/rank_combiner_dev.py docs/survival/study-none docs/survival/study-pipeline
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Callable

from ghostsent.stats import fisher_combine, truncated_product

COMBINERS: dict[str, Callable[[list[float]], float]] = {
    "fisher": fisher_combine,
    **{f"tpm{tau:g}": (lambda ps, t=tau: truncated_product(ps, t)) for tau in (0.01, 0.05, 0.1)},
}
TESTS = ("rank", "rank_top20", "rank_chat20")


def _rows(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        d = json.loads((Path(p) / "results.json").read_text())
        out += [r for run in d["runs"] for r in run["rows"]]
    return out


def table(paths: list[str], vocab: int, alpha: float) -> str:
    rows = _rows(paths)
    reps = sorted({r["repetitions"] for r in rows if r["role"] == "member"})
    low = [k for k in reps if k <= 5]
    head = ["test", "combiner", *[f"{k}x" for k in reps], f"mean -log10 p, members <= {max(low)}x",
            "controls FP", "min control p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for test in TESTS:
        for name, comb in COMBINERS.items():
            p = {id(r): comb([c / vocab for c in r[test]["at_or_above"]]) for r in rows if test in r}
            cells = []
            for k in reps:
                m = [r for r in rows if r["role"] == "member" and r["repetitions"] == k and test in r]
                cells.append(f"{sum(p[id(r)] < alpha for r in m)}/{len(m)}")
            weak = [-math.log10(p[id(r)]) for r in rows if r["role"] == "member" and r["repetitions"] in low
                    and test in r]
            cells.append(f"{sum(weak) / max(1, len(weak)):.2f}")
            ctl = [p[id(r)] for r in rows if r["role"] == "control" and test in r]
            lines.append(f"| {test} | {name} | " + " | ".join(cells)
                         + f" | {sum(x < alpha for x in ctl)}/{len(ctl)} | {min(ctl):.3g} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="study output folders holding results.json")
    ap.add_argument("--vocab", type=int, default=7776)
    ap.add_argument("--alpha", type=float, default=1e-3)
    a = ap.parse_args()
    print(table(a.runs, a.vocab, a.alpha))


if __name__ == "__main__":
    main()
