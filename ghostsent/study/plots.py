"""The study's figures (matplotlib, headless): detection by repetitions, ROC, control calibration and
exposure, one of each per run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


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
        for t in s["detection_rate"]:
            ys = [s["detection_rate"][t][str(r)] for r in reps]
            ci = s.get("detection_ci95", {}).get(t)
            if ci:   # Wilson 95% intervals as error bars
                err = [[y - ci[str(r)][0] for y, r in zip(ys, reps)], [ci[str(r)][1] - y for y, r in zip(ys, reps)]]
                ax.errorbar(reps, ys, yerr=err, marker="o", capsize=3, label=t)
            else:
                ax.plot(reps, ys, marker="o", label=t)
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
    _dilution_plots(study, save, plt)
    return files


def _dilution_plots(study: dict[str, Any], save: Any, plt: Any) -> None:
    """Per run with several dilutions: detection rate by repetitions, one line per dilution, per test."""
    from ghostsent.study.config import base_key

    cfg = study["config"]
    if len(cfg.get("dilutions", [1])) < 2:
        return
    groups: dict[str, list[dict[str, Any]]] = {}
    for res in study["runs"]:
        groups.setdefault(base_key(res["run"]), []).append(res)
    reps = cfg["repetitions"]
    for key, runs in groups.items():
        tests = [t for t in ("probe", "ppl_ref", "rank", "rank_top20", "rank_prefill20", "rank_text_prefill")
                 if t in runs[0]["summary"]["detection_rate"]]  # the API tests whose power changes
        fig, axes = plt.subplots(1, len(tests), figsize=(3.2 * len(tests), 3.2), sharey=True, squeeze=False)
        for ax, t in zip(axes[0], tests):
            for res in sorted(runs, key=lambda r: r["run"].get("dilution", 1)):
                rate = res["summary"]["detection_rate"][t]
                ax.plot(reps, [rate[str(r)] for r in reps], marker="o", label=f"{res['run'].get('dilution', 1)}×")
            ax.set_xscale("log")
            ax.set_xticks(reps, [str(r) for r in reps])
            ax.set_title(t, fontsize=9)
            ax.set_xlabel("repetitions")
        axes[0][0].set_ylabel(f"detected at p < {cfg['alpha']:g}")
        axes[0][0].legend(title="dilution", fontsize=7)
        save(fig, f"dilution_{key}.png")
