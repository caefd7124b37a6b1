"""datatrove's filters, run offline.

datatrove's C4BadWordsFilter downloads its LDNOOBW list on first use
(`cached_asset_path_or_download`). `OfflineC4BadWordsFilter` is the real filter class; only the place
its list file comes from is swapped, for the duration of that one call, for the vendored copy of the
same list (see data/ldnoobw/SOURCE.md). datatrove then reads the file, applies its allow-list and
builds its own regex, so the matching is exactly the library's. Anything else it would fetch is refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ghostsent.errors import InputError


def vendored_list_path(lang: str) -> Path:
    """The vendored LDNOOBW file for `lang` as a real path (importlib resources may be zipped)."""
    from ghostsent.survive.screen import _data, ldnoobw

    ldnoobw(lang)  # validates the language
    res = _data("ldnoobw", f"{lang}.txt")
    path = Path(str(res))
    if not path.is_file():
        raise InputError(f"vendored list {lang}.txt is not a plain file in this installation")
    return path


def offline_badwords_filter(default_language: str = "en", **kwargs: Any):
    """A datatrove C4BadWordsFilter that loads the vendored lists instead of downloading them."""
    from datatrove.pipeline.filters import c4_filters

    class OfflineC4BadWordsFilter(c4_filters.C4BadWordsFilter):
        def _get_badwords(self, lang: str):
            original = c4_filters.cached_asset_path_or_download

            def local(remote_path: str, *a: Any, **k: Any) -> str:
                name = remote_path.rstrip("/").rsplit("/", 1)[-1]
                if name != lang:
                    raise InputError(f"datatrove asked for {remote_path!r}; only vendored lists are used")
                return str(vendored_list_path(lang))

            c4_filters.cached_asset_path_or_download = local
            try:
                return super()._get_badwords(lang)
            finally:
                c4_filters.cached_asset_path_or_download = original

    kwargs.setdefault("fail_on_missing_language", False)
    return OfflineC4BadWordsFilter(default_language=default_language, **kwargs)
