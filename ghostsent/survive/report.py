"""Render a SurvivalReport: a text table, Markdown, JSON and a PNG survival funnel."""
from __future__ import annotations

import json
from pathlib import Path

from ghostsent.survive.pipeline import StageReport, SurvivalReport


def _share(s: StageReport) -> str:
    return "-" if s.copy_share is None else f"{100 * s.copy_share:.1f}%"


def _ghost_col(s: StageReport) -> str:
    if s.dropped_because_of_ghost is None:
        return "-"
    return f"{s.dropped_because_of_ghost} of {s.untagged_kept}"


def _filter_col(s: StageReport) -> str:
    if s.copies_where_untagged_kept is None:
        return "-"
    return f"{s.copies_where_untagged_kept}/{s.untagged_kept}"


COLUMNS = ("stage", "docs in", "docs kept", "tagged in", "tagged kept", "copies in", "copies kept", "share",
           "ghosts lost", "dropped by ghost", "kept where untagged kept")


def rows(report: SurvivalReport) -> list[tuple[str, ...]]:
    out = []
    for s in report.stages:
        name = s.name + (" (side branch)" if s.side_branch else "")
        out.append((name, str(s.docs_in), str(s.docs_kept), str(s.tagged_in), str(s.tagged_kept), str(s.copies_in),
                    str(s.copies_kept), _share(s), str(len(s.ghosts_lost)), _ghost_col(s), _filter_col(s)))
    return out


def text_table(report: SurvivalReport) -> str:
    data = [COLUMNS] + rows(report)
    widths = [max(len(r[i]) for r in data) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in data]
    return "\n".join(lines)


def summary_line(report: SurvivalReport) -> str:
    lost = report.losses
    head = (f"{report.documents} documents ({report.tagged_documents} tagged), {report.ghosts} ghosts, "
            f"{report.copies} ghost copies")
    if not lost:
        return head + ": every stage kept every ghost copy."
    return head + ": ghost copies lost at " + ", ".join(f"{s.name} ({s.copies_in - s.copies_kept})" for s in lost) + "."


def markdown(report: SurvivalReport) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(r) + " |\n" for r in rows(report))
    libs = "".join(f"* **{s.name}**: {s.library}\n" for s in report.stages)
    return (f"# Ghost survival\n\n{summary_line(report)}\n\n{head}{body}\n"
            "*share* = ghost copies kept / copies that entered the stage; *dropped by ghost* = tagged pages "
            "dropped whose untagged twin passed, of the twins that passed; *kept where untagged kept* = ghost "
            "copies kept in pages whose untagged twin passed / those twins.\n\n## Stages\n\n" + libs)


def funnel_png(report: SurvivalReport, path: Path) -> None:
    """Ghost copies and tagged documents left after each main-line stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = [s for s in report.stages if not s.side_branch]
    names = ["input"] + [s.name for s in main]
    copies = [report.copies] + [s.copies_kept for s in main]
    tagged = [report.tagged_documents] + [s.tagged_kept for s in main]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], copies, height=0.4, label="ghost copies", color="#3b6ea5")
    ax.barh([i - 0.2 for i in y], tagged, height=0.4, label="tagged documents", color="#b0b0b0")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("left after the stage")
    ax.set_title("Survival funnel: ghost copies through the pipeline")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: SurvivalReport, out_dir: Path) -> dict[str, str]:
    """survival.json, survival.md and survival_funnel.png under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "survival.json", "markdown": out_dir / "survival.md",
             "png": out_dir / "survival_funnel.png"}
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    funnel_png(report, paths["png"])
    return {k: str(v) for k, v in paths.items()}
