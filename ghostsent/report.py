"""Reports a person can read and a script can parse: JSON, Markdown, HTML and PNG plots.

Written atomically into one folder per run; nothing half-written is left behind.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from ghostsent.fsio import atomic_write
from ghostsent.stats import format_p


def _atomic_write(path: Path, data: str | bytes) -> None:
    """Atomic, with the mode the umask gives (like the plots next to it): reports are for sharing."""
    atomic_write(path, data.encode("utf-8") if isinstance(data, str) else data)


def _plot_ppl(res: dict[str, Any], out: Path) -> list[str]:
    """One histogram per stratum: null scores, with each member's score as a vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for i, (st, nulls) in enumerate(res.get("null_scores", {}).items()):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        finite = [x for x in nulls if np.isfinite(x)]  # NaN/inf nulls (counted against the ghost) cannot be drawn
        ax.hist(finite, bins=40, color="#bbbbbb", label=f"{len(finite)} fresh passphrases (null)")
        for r in res["subjects"]:
            if "ppl" not in r or r["ppl"].get("stratum") != st or not np.isfinite(r["ppl"]["score"]):
                continue
            color = "#c0392b" if r["role"] == "member" else "#2980b9"
            ax.axvline(r["ppl"]["score"], color=color, lw=1.5, alpha=0.8)
        ax.plot([], [], color="#c0392b", label="your ghost sentence(s)")
        ax.plot([], [], color="#2980b9", label="controls (never published)")
        ax.set_xlabel("score: mean NLL of passphrase tokens" + (" minus reference" if res.get("reference") else "") + " (lower = more familiar)")
        ax.set_ylabel("count")
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = f"ppl_null_{i}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)
    return files


def _plot_pvalues(res: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in res["subjects"] if r.get("p_value") is not None]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.4))
    ys = np.arange(len(rows))
    ps = [max(r["p_value"], 1e-300) for r in rows]
    colors = ["#c0392b" if r["role"] == "member" else "#2980b9" for r in rows]
    ax.barh(ys, [-np.log10(p) for p in ps], color=colors)
    ax.set_yticks(ys, [r["key"] for r in rows], fontsize=7)
    alpha = res["settings"].get("alpha", 1e-3)
    ax.axvline(-np.log10(alpha), color="k", ls="--", lw=1, label=f"threshold p = {alpha:g}")
    ax.set_xlabel("-log10 p (identifier's p, before the history and Holm corrections)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pvalues.png", dpi=110)
    plt.close(fig)
    return ["pvalues.png"]


def markdown(res: dict[str, Any], images: list[str] | None = None) -> str:
    lines = [f"# ghostsent {res['kind']} report", "", f"**{res['verdict']}**", ""]
    lines += [f"- Model: `{res['model'].get('spec')}`"]
    if res.get("reference"):
        lines += [f"- Reference model: `{res['reference'].get('spec')}`"]
    s = res["settings"]
    lines += [f"- Tests: {', '.join(s['tests'])}; k = {s['ks']}; nulls = {s['n_nulls']}; controls per stratum = {s['controls']}; "
              f"threshold = {s['alpha']:g}", f"- Started {res['started_at']}, took {res['seconds']:.1f} s; status {res['status']}", ""]
    lines += _subject_table(res)
    lines += _combined_lines(res.get("combined", {}))
    lines += ["", "## Negative controls", ""]
    for t, c in res.get("controls", {}).items():
        extra = f", {c['completed']} completed" if "completed" in c else ""
        ks = f", KS uniformity p = {format_p(c['ks_uniform_p'])}" if "ks_uniform_p" in c else ""
        lines.append(f"- {t}: {c['n']} never-published passphrases, {c['flagged']} below threshold{extra}{ks}")
    lines += _disclosure_lines(res)
    if images:
        lines += ["", "## Plots", ""] + [f"![{i}]({i})" for i in images]
    lines += ["", "## What this does and does not show", ""] + [f"- {w}" for w in res.get("warnings", [])]
    lines += ["", "Under the stated assumptions (docs/statistics.md) the perplexity p-values are exact and the probe "
              "p-values are valid upper bounds (a union bound over the places a reply is searched). The corrected p "
              "multiplies an identifier's j-th test by j(j+1) and then applies Holm over the run's family."]
    lines += _extrapolation_lines(res)
    return "\n".join(lines) + "\n"


def _subject_table(res: dict[str, Any]) -> list[str]:
    lines = ["| identifier | role | probe: best matches | probe p | ppl rank | ppl p | exposure (bits) | test # | "
             "p (corrected) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["subjects"]:
        pr, pp = r.get("probe"), r.get("ppl")
        best = "–"
        if pr and pr["records"]:
            b = min(pr["records"], key=lambda x: x["p_value"])
            best = f"{b['matches']}/{b['k']}"
        rank = f"{pp['rank']}/{pp['n_nulls'] + 1}" if pp else "–"
        expo = f"{pp['exposure_bits']:.1f} (at most {pp['max_exposure_bits']:.1f})" if pp else "–"
        test = str(r.get("test_number") or 1) if r["role"] == "member" else "–"
        lines.append(
            f"| {r['key']} | {r['role']} | {best} | {format_p(pr['p_value']) if pr else '–'} | "
            f"{rank} | {format_p(pp['p_value']) if pp else '–'} | {expo} | {test} | "
            f"{format_p(r['p_holm']) if 'p_holm' in r else '–'} |")
    return lines


def _combined_lines(comb: dict[str, Any]) -> list[str]:
    lines = ["", "## Combined evidence", ""]
    if "ppl_rank_sum" in comb:
        rs = comb["ppl_rank_sum"]
        lines.append(f"- Rank-sum test of all {comb['n_members']} ghost sentences against the pooled nulls: "
                     f"p = {format_p(rs['p_value'])} ({rs['method']}); corrected p = {format_p(comb.get('p_holm', 1.0))}")
        for part in rs.get("strata", []):
            lines.append(f"  - stratum {part['stratum']}: {part['n_members']} members vs {part['n_nulls']} nulls, "
                         f"p = {format_p(part['p_value'])} ({part['method']})")
    if "probe_family" in comb:
        pf = comb["probe_family"]
        lines.append(f"- Last-k probes, all identifiers (Bonferroni): p = {format_p(pf['p_value'])}; "
                     f"{pf['completed']} ghost sentence(s) completed exactly")
    if comb.get("family_size"):
        lines.append(f"- One family at the threshold: Holm over {comb['family_size']} test(s)")
    return lines


def _disclosure_lines(res: dict[str, Any]) -> list[str]:
    shown = res.get("disclosures") or []
    if not shown:
        return []
    lines = ["", "## What this run showed the model", ""]
    for d in shown:
        n = len(d["words"])
        lines.append(f"- {d['identifier']}: {'the first ' + str(n) if n else 'no'} passphrase word(s) -> "
                     f"{d['endpoint']} ({d['via']})")
    lines.append("- A provider that trains on what it is sent could learn these words from this test itself: test "
                 "its later models with identifiers (or words) never shown to it. `ghostsent show ID` lists every "
                 "disclosure.")
    return lines


def _extrapolation_lines(res: dict[str, Any]) -> list[str]:
    rows = [(r["key"], r["ppl"]["model_extrapolation"]) for r in res["subjects"] if "ppl" in r]
    if not rows:
        return []
    lines = ["", "## Model extrapolation (not evidence)", "",
             "A skew-normal fitted to the null scores, read below the smallest exact p. It is a model, can be "
             "wrong by orders of magnitude when the nulls have a heavier tail, and is never used for a verdict; it "
             "is shown (one significant digit) only when the fit passes a KS test and matches the nulls' lowest 1%."]
    for key, ext in rows:
        val = f"{ext['tail_p']:.0e}" if ext.get("tail_p") is not None else f"not shown: {ext['note']}"
        lines.append(f"- {key}: {val}")
    return lines


def write_report(res: dict[str, Any], out_dir: str | Path, plots: bool = True) -> dict[str, str]:
    """Write report.json, report.md, report.html and PNG plots into out_dir. Returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = (_plot_ppl(res, out) + _plot_pvalues(res, out)) if plots else []
    md = markdown(res, images)
    _atomic_write(out / "report.json", json.dumps(res, indent=2, ensure_ascii=False, default=_default))
    _atomic_write(out / "report.md", md)
    body = html.escape(md)
    imgs = "".join(f'<p><img src="{i}" alt="{i}"></p>' for i in images)
    _atomic_write(
        out / "report.html",
        f"<!doctype html><meta charset='utf-8'><title>ghostsent report</title>"
        f"<body style='font-family:sans-serif;max-width:60em;margin:auto'><pre style='white-space:pre-wrap'>{body}</pre>{imgs}</body>",
    )
    return {"json": str(out / "report.json"), "markdown": str(out / "report.md"), "html": str(out / "report.html"),
            **{f"plot:{i}": str(out / i) for i in images}}


def _default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
