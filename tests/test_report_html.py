"""report.html is a real, self-contained page: rendered from the template, every text escaped, the plots
embedded as base64 PNG; nothing is loaded from elsewhere."""
from __future__ import annotations

import base64
import re

from ghostsent.detection.engine import run_detection
from ghostsent.detection.innocent import InnocentTarget
from ghostsent.detection.report import write_report
from ghostsent.detection.results import DetectionSettings
from ghostsent.detection.subjects import MEMBER, Subject
from ghostsent.passphrase import Ghost
from ghostsent.wordlists import load_wordlist

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def test_html_report_escapes_everything_and_embeds_its_plots(tmp_path):
    wl = load_wordlist("en")
    target = InnocentTarget(HOSTILE, seed=1)  # a hostile model name ends up in the verdict and the header
    member = Subject("gs-0123456789", MEMBER, Ghost(tuple(wl.words[:8]), "none"), wl, owner=HOSTILE)
    res = run_detection(target, [member], DetectionSettings(tests=("ppl", "probe"), n_nulls=50, controls=2, seed=3))
    paths = write_report(res, tmp_path / "r")
    page = open(paths["html"], encoding="utf-8").read()
    assert page.startswith("<!doctype html>") and "$body" not in page and "$title" not in page
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert "&lt;script&gt;" in page
    assert "<pre>" not in page  # rendered, not escaped Markdown in a <pre>
    srcs = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:  # each one a real PNG
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:|//|/)', page)
