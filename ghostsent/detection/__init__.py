"""Testing a model for the ghosts: the tests, how their p-values combine, runs, sessions and reports.

    subjects.py     what is tested: ledger identifiers and fresh controls
    probe.py        the last-k probe, the card and pasted-reply scoring (check)
    perplexity.py   the perplexity rank test
    registry.py     THE table of tests (probe, ppl): a new test plugs in here
    pooled.py       the joint rank-sum answer over many identifiers
    verdict.py      pure: p-values in, corrections, decision and verdict out
    results.py      typed results (DetectionSettings, SubjectResult, DetectionResult, ...)
    engine.py       run_detection: tests -> results -> verdict (no ledger, no capability check)
    session.py      load -> check capability -> number the tests -> run -> store -> report
    report.py       JSON, Markdown, self-contained HTML and plots
    innocent.py     models that never saw a ghost (the null harness and the validity tests)
"""
