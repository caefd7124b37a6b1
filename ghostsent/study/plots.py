"""The study's figures (matplotlib, headless): detection by repetitions, ROC, control calibration and
exposure, one of each per run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ghostsent.study.results import TESTS

def make_plots(study: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = study["config"]
    files: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        files.append(name)

    for res in study["runs"]:
        s, key = res["summary"], res["key"]
        reps = cfg["repetitions"]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for t in TESTS:
            ax.plot(reps, [s["detection_rate"][t][str(r)] for r in reps], marker="o", label=t)
        ax.set_xscale("log")
        ax.set_xticks(reps, [str(r) for r in reps])
        ax.set_xlabel("repetitions (documents carrying the ghost)")
        ax.set_ylabel(f"detected at p < {cfg['alpha']:g}")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8)
        save(fig, f"detection_{key}.png")

        fig, ax = plt.subplots(figsize=(5, 5))
        for t, roc in s["roc"].items():
            ax.plot(roc["fpr"], roc["tpr"], label=f"{t} (AUC {roc['auc']:.2f})")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("false positive rate (controls)")
        ax.set_ylabel("true positive rate (members)")
        ax.legend(fontsize=7)
        save(fig, f"roc_{key}.png")

        fig, ax = plt.subplots(figsize=(6, 3.4))
        for t, ps in s["control_p_values"].items():
            xs = np.sort(ps)
            ax.plot(np.arange(1, len(xs) + 1) / (len(xs) + 1), xs, marker=".", ls="", label=t)
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("uniform quantile")
        ax.set_ylabel("control p-value")
        ax.set_title("Controls (never inserted): p-values should lie on or above the diagonal", fontsize=9)
        ax.legend(fontsize=8)
        save(fig, f"control_pvalues_{key}.png")

        fig, ax = plt.subplots(figsize=(6, 3.4))
        for t, ex in s["exposure_by_repetitions"].items():
            ax.plot(reps, [ex[str(r)] for r in reps], marker="o", label=t)
        ax.axhline(np.log2(cfg["n_nulls"] + 1), color="k", ls="--", lw=1, label="maximum (rank 1)")
        ax.set_xscale("log")
        ax.set_xticks(reps, [str(r) for r in reps])
        ax.set_xlabel("repetitions")
        ax.set_ylabel("mean exposure (bits)")
        ax.legend(fontsize=8)
        save(fig, f"exposure_{key}.png")
    return files
