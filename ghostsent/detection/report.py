"""Reports a person can read and a script can parse: JSON, Markdown, a self-contained HTML page, PNG plots.

The content is built once as a list of blocks (headings, paragraphs, lists, tables, images) and rendered
twice: as Markdown, and as HTML through templates/report.html with every piece of text escaped and the
plots embedded as base64 PNG (the page needs nothing beside it). Written atomically into one folder per
run (fsio.atomic_write); nothing half-written is left behind.
"""
from __future__ import annotations

import base64
import html
import io
import json
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np

from ghostsent.detection.results import DetectionResult
from ghostsent.fsio import atomic_write
from ghostsent.stats import format_p

# --- blocks -----------------------------------------------------------------------------------------------

Inline = Union[str, tuple[str, str]]   # plain text, or ("code" | "strong", text)


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    parts: list[Inline]
    cls: str = ""


@dataclass
class Bullets:
    items: list[list[Inline]]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    name: str
    png: bytes = field(repr=False)


Block = Union[Heading, Para, Bullets, Table, Image]


def _md_inline(parts: Sequence[Inline]) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        else:
            out.append(f"`{p[1]}`" if p[0] == "code" else f"**{p[1]}**")
    return "".join(out)


def to_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [_md_inline(b.parts), ""]
        elif isinstance(b, Bullets):
            lines += ["- " + _md_inline(item) for item in b.items] + [""]
        elif isinstance(b, Table):
            lines += ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(r) + " |" for r in b.rows] + [""]
        elif isinstance(b, Image):
            lines += [f"![{b.name}]({b.name})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _html_inline(parts: Sequence[Inline]) -> str:
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(html.escape(p))
        else:
            tag = "code" if p[0] == "code" else "strong"
            out.append(f"<{tag}>{html.escape(p[1])}</{tag}>")
    return "".join(out)


def to_html(blocks: Sequence[Block], title: str) -> str:
    """The page: blocks rendered with every text escaped, images as data: URIs, in the template."""
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            cls = f' class="{html.escape(b.cls)}"' if b.cls else ""
            body.append(f"<p{cls}>{_html_inline(b.parts)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_html_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Image):
            data = base64.b64encode(b.png).decode("ascii")
            body.append(f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(b.name)}"></p>')
    from ghostsent import __version__

    template = string.Template(resources.files("ghostsent.detection").joinpath("templates/report.html")
                               .read_text(encoding="utf-8"))
    return template.substitute(title=html.escape(title), body="\n".join(body), version=html.escape(__version__))


# --- plots ------------------------------------------------------------------------------------------------

def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ppl(res: DetectionResult) -> list[Image]:
    """One histogram per stratum: null scores, with each member's and control's score as a line."""
    plt = _pyplot()
    out = []
    for i, (st, nulls) in enumerate(res.null_scores.items()):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        finite = [x for x in nulls if np.isfinite(x)]  # NaN/inf nulls (counted against the ghost) cannot be drawn
        ax.hist(finite, bins=40, color="#bbbbbb", label=f"{len(finite)} fresh passphrases (null)")
        for r in res.subjects:
            if r.ppl is None or r.ppl.stratum != st or not np.isfinite(r.ppl.score):
                continue
            ax.axvline(r.ppl.score, color="#c0392b" if r.role == "member" else "#2980b9", lw=1.5, alpha=0.8)
        ax.plot([], [], color="#c0392b", label="your ghost sentence(s)")
        ax.plot([], [], color="#2980b9", label="controls (never published)")
        ax.set_xlabel("score: mean NLL of passphrase tokens" + (" minus reference" if res.reference else "")
                      + " (lower = more familiar)")
        ax.set_ylabel("count")
        ax.legend(fontsize=8)
        out.append(Image(f"ppl_null_{i}.png", _png(fig)))
    return out


def plot_pvalues(res: DetectionResult) -> list[Image]:
    rows = [r for r in res.subjects if r.p_value is not None]
    if not rows:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.4))
    ys = np.arange(len(rows))
    ax.barh(ys, [-np.log10(max(r.p_value, 1e-300)) for r in rows],
            color=["#c0392b" if r.role == "member" else "#2980b9" for r in rows])
    ax.set_yticks(ys, [r.key for r in rows], fontsize=7)
    ax.axvline(-np.log10(res.settings.alpha), color="k", ls="--", lw=1, label=f"threshold p = {res.settings.alpha:g}")
    ax.set_xlabel("-log10 p (identifier's p, before the history and Holm corrections)")
    ax.legend(fontsize=8)
    return [Image("pvalues.png", _png(fig))]


# --- content ----------------------------------------------------------------------------------------------

EXACTNESS = ("Under the stated assumptions (docs/statistics.md) the perplexity p-values are exact and the probe "
             "p-values are valid upper bounds (a union bound over the places a reply is searched); the word-rank "
             "p-values are valid without nulls (Fisher's or the truncated product over super-uniform per-word "
             "ranks). The corrected p multiplies an identifier's j-th test by j(j+1) and then applies Holm over "
             "the run's family.")


def blocks(res: DetectionResult, images: Sequence[Image] = ()) -> list[Block]:
    s = res.settings
    out: list[Block] = [Heading(f"ghostsent {res.kind} report", 1), Para([("strong", res.verdict)], "verdict")]
    facts: list[list[Inline]] = [["Model: ", ("code", str(res.model.get("spec")))]]
    if res.reference:
        facts.append(["Reference model: ", ("code", str(res.reference.get("spec")))])
    facts.append([f"Tests: {', '.join(s.tests)}; k = {list(s.ks)}; nulls = {s.n_nulls}; controls per stratum = "
                  f"{s.controls}; threshold = {s.alpha:g}"])
    facts.append([f"Started {res.started_at}, took {res.seconds:.1f} s; status {res.status}"])
    out += [Bullets(facts), _subject_table(res)]
    out += [Heading("Combined evidence"), Bullets(_combined_items(res))]
    out += [Heading("Negative controls"), Bullets(_control_items(res))]
    out += _disclosure_blocks(res)
    if images:
        out += [Heading("Plots"), *images]
    out += [Heading("What this does and does not show"), Bullets([[w] for w in res.warnings]), Para([EXACTNESS])]
    out += _extrapolation_blocks(res)
    return out


def _subject_table(res: DetectionResult) -> Table:
    rows = []
    for r in res.subjects:
        pr, pp, wr = r.probe, r.ppl, r.word_rank
        best = "–"
        if pr and pr.records:
            b = min(pr.records, key=lambda x: x.p_value)
            best = f"{b.matches}/{b.k}"
        rows.append([
            r.key, r.role, best, format_p(pr.p_value) if pr else "–",
            f"{pp.rank.rank}/{pp.rank.n_nulls + 1}" if pp else "–", format_p(pp.p_value) if pp else "–",
            f"{pp.exposure:.1f} (at most {np.log2(pp.rank.n_nulls + 1):.1f})" if pp else "–",
            f"{wr.first_place}/{len(wr.positions)}" if wr else "–", format_p(wr.p_value) if wr else "–",
            str(r.test_number or 1) if r.role == "member" else "–",
            format_p(r.p_holm) if r.p_holm is not None else "–"])
    return Table(["identifier", "role", "probe: best matches", "probe p", "ppl rank", "ppl p", "exposure (bits)",
                  "word-rank: words first", "word-rank p", "test #", "p (corrected)"], rows)


def _combined_items(res: DetectionResult) -> list[list[Inline]]:
    c, items = res.combined, []
    if c.rank_sum is not None:
        rs = c.rank_sum
        items.append([f"Rank-sum test of all {c.n_members} ghost sentences against the pooled nulls: "
                      f"p = {format_p(rs.p_value)} ({rs.method}); corrected p = {format_p(c.p_holm or 1.0)}"])
        if len(rs.parts) > 1:
            items += [[f"stratum {x.stratum}: {x.n_members} members vs {x.n_nulls} nulls, "
                       f"p = {format_p(x.p_value)} ({x.method})"] for x in rs.parts]
    if c.probe_family is not None:
        items.append([f"Last-k probes, all identifiers (Bonferroni): p = {format_p(c.probe_family.p_value)}; "
                      f"{c.probe_family.completed} ghost sentence(s) completed exactly"])
    if c.family_size:
        items.append([f"One family at the threshold: Holm over {c.family_size} test(s)"])
    return items


def _control_items(res: DetectionResult) -> list[list[Inline]]:
    items = []
    for t, c in res.controls.items():
        extra = f", {c.completed} completed" if c.completed is not None else ""
        ks = f", KS uniformity p = {format_p(c.ks_uniform_p)}" if c.ks_uniform_p is not None else ""
        items.append([f"{t}: {c.n} never-published passphrases, {c.flagged} below threshold{extra}{ks}"])
    return items


def _disclosure_blocks(res: DetectionResult) -> list[Block]:
    if not res.disclosures:
        return []
    items: list[list[Inline]] = [
        [f"{d.identifier}: {'the first ' + str(len(d.words)) if d.words else 'no'} passphrase word(s) -> "
         f"{d.endpoint} ({d.via})"] for d in res.disclosures]
    items.append(["A provider that trains on what it is sent could learn these words from this test itself: test "
                  "its later models with identifiers (or words) never shown to it. ", ("code", "ghostsent show ID"),
                  " lists every disclosure."])
    return [Heading("What this run showed the model"), Bullets(items)]


def _extrapolation_blocks(res: DetectionResult) -> list[Block]:
    rows = [(r.key, r.ppl.extrapolation) for r in res.subjects if r.ppl is not None]
    if not rows:
        return []
    intro = ("A skew-normal fitted to the null scores, read below the smallest exact p. It is a model, can be "
             "wrong by orders of magnitude when the nulls have a heavier tail, and is never used for a verdict; it "
             "is shown (one significant digit) only when the fit passes a KS test and matches the nulls' lowest 1%.")
    items = [[f"{key}: " + (f"{ext.p_value:.0e}" if ext.p_value is not None else f"not shown: {ext.note}")]
             for key, ext in rows]
    return [Heading("Model extrapolation (not evidence)"), Para([intro]), Bullets(items)]


def markdown(res: DetectionResult, images: Sequence[Image] = ()) -> str:
    return to_markdown(blocks(res, images))


def write_report(res: DetectionResult, out_dir: "str | Path", run_id: int | None = None,
                 plots: bool = True) -> dict[str, str]:
    """Write report.json, report.md, report.html (self-contained) and the PNG plots into out_dir."""
    out = Path(out_dir)
    images = (plot_ppl(res) + plot_pvalues(res)) if plots else []
    content = blocks(res, images)
    data = res.to_dict() | {"run_id": run_id}
    for img in images:
        atomic_write(out / img.name, img.png)
    atomic_write(out / "report.json", json.dumps(data, indent=2, ensure_ascii=False, default=_default))
    atomic_write(out / "report.md", to_markdown(content))
    atomic_write(out / "report.html", to_html(content, f"ghostsent {res.kind} report"))
    return {"json": str(out / "report.json"), "markdown": str(out / "report.md"), "html": str(out / "report.html"),
            **{f"plot:{i.name}": str(out / i.name) for i in images}}


def _default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
