"""The Spark engine on a real local Spark (local[2], Java from the distribution), against the
single-process tagger row by row, and the manifest merge it feeds. One session for the module: Spark
takes seconds to start."""
from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java (.ci/run installs openjdk-17-jre-headless)", allow_module_level=True)

from ghostsent.ledger import Ledger  # noqa: E402
from ghostsent.ledger.manifest import merge_manifest  # noqa: E402
from ghostsent.tagging import JsonlOptions, tag_jsonl  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    from ghostsent.tagging.spark import local_session

    s = local_session("local[2]", "ghostsent-tests")
    yield s
    s.stop()


def corpus(path, n=120, owners=5):
    with open(path, "w") as f:
        for i in range(n):
            body = "" if i % 17 == 5 else f"Post {i} opens here. It goes on a while. It ends {i}."
            f.write(json.dumps({"id": f"p{i}", "author": f"user{i % owners}", "body": body, "likes": i * 3}) + "\n")


@pytest.mark.parametrize("cap,fraction", [(3, None), (None, 0.3)])
def test_spark_matches_single_process_row_by_row_and_merge_is_idempotent(tmp_path, spark, cap, fraction):
    from ghostsent.tagging.spark import tag_spark

    inp = tmp_path / "in.jsonl"
    corpus(inp)
    opts = JsonlOptions(text_field="body", owner_field="author", id_field="id", max_per_owner=cap,
                        fraction=fraction, words=6)
    with Ledger(tmp_path / "l.db") as led:
        res = tag_spark(spark, led, str(inp), str(tmp_path / "out"), str(tmp_path / "manifest"), opts, fmt="jsonl")
        assert led.insertions() == []  # workers never write the ledger: the manifest carries the insertions
        m1 = merge_manifest(led, tmp_path / "manifest")
        assert m1.added == res.counts["inserted"] > 0 and m1.skipped == 0
        m2 = merge_manifest(led, tmp_path / "manifest")  # a re-run of the merge (or of a failed job)
        assert m2.added == 0 and m2.skipped == m1.rows
        spark_rows = sorted((i.identifier_id, i.document, i.sha256_before, i.sha256_after, i.offset)
                            for i in led.insertions())
        # the single-process tagger on the same ledger: same identifiers, same secret
        s = tag_jsonl(led, str(inp), str(tmp_path / "single.jsonl"), opts)
        single_rows = sorted((i.identifier_id, i.document, i.sha256_before, i.sha256_after, i.offset)
                             for i in led.insertions())
    assert s["new_identifiers"] == 0 and s["inserted"] == res.counts["inserted"]
    assert sorted(set(single_rows)) == spark_rows and len(single_rows) == 2 * len(spark_rows)
    single = {r["id"]: r for r in map(json.loads, (tmp_path / "single.jsonl").read_text().splitlines())}
    got = [json.loads(l) for p in sorted((tmp_path / "out").glob("part-*")) for l in p.read_text().splitlines()]
    assert len(got) == len(single) == 120
    for row in got:  # every column of every row equals the single-process output
        assert row == single[row["id"]], row["id"]
    if cap is not None:
        per_owner = {}
        for i in spark_rows:
            per_owner[i[0]] = per_owner.get(i[0], 0) + 1
        assert set(per_owner.values()) == {3}


def test_spark_without_id_field_uses_row_numbers_and_reports_bad_rows(tmp_path, spark):
    from ghostsent.errors import InputError
    from ghostsent.tagging.spark import tag_spark

    inp = tmp_path / "in.jsonl"
    corpus(inp, n=60, owners=3)
    lines = inp.read_text().splitlines()
    lines[7] = json.dumps({"id": "p7", "body": "No owner here. At all.", "likes": 21})  # no author: a bad row
    inp.write_text("\n".join(lines) + "\n")
    opts = dict(text_field="body", owner_field="author", fraction=0.5, words=6)
    with Ledger(tmp_path / "l.db") as led:
        with pytest.raises(InputError, match="row 8: missing owner field 'author'"):
            tag_spark(spark, led, str(inp), str(tmp_path / "o1"), str(tmp_path / "m1"), JsonlOptions(**opts),
                      fmt="jsonl")
        assert not (tmp_path / "o1").exists() and not (tmp_path / "m1").exists()
        res = tag_spark(spark, led, str(inp), str(tmp_path / "out"), str(tmp_path / "man"),
                        JsonlOptions(skip_bad=True, **opts), fmt="jsonl")
        assert res.counts["bad"] == 1 and res.counts["records"] == 59
        merge_manifest(led, tmp_path / "man")
        spark_rows = sorted((int(i.document.rsplit(" ", 1)[1]), i.sha256_after) for i in led.insertions())
        n = len(spark_rows)
        tag_jsonl(led, str(inp), str(tmp_path / "single.jsonl"), JsonlOptions(skip_bad=True, **opts))
        single_rows = sorted((int(i.document.rsplit(" ", 1)[1]), i.sha256_after) for i in led.insertions()[n:])
    assert spark_rows == single_rows and 0 < n < 59  # row N of the table is line N of the file
    got = [json.loads(l) for p in sorted((tmp_path / "out").glob("part-*")) for l in p.read_text().splitlines()]
    single = [json.loads(l) for l in (tmp_path / "single.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in g.items() if v is not None} for g in got] == single  # same rows, same order


def test_cli_tag_engine_spark_then_ledger_merge(tmp_path, spark):
    """The commands as a user runs them (the CLI's session is the fixture's: one JVM per test run)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from ghostsent.cli import main

    pq.write_table(pa.table({"post": [f"q{i}" for i in range(30)], "who": [f"w{i % 2}" for i in range(30)],
                             "text": [f"Entry {i} here. It ends." for i in range(30)]}), tmp_path / "in.parquet")
    led = str(tmp_path / "l.db")
    r = CliRunner().invoke(main, ["tag", str(tmp_path / "in.parquet"), str(tmp_path / "out"), "--engine", "spark",
                                  "--manifest", str(tmp_path / "man"), "--owner-field", "who", "--id-field", "post",
                                  "--max-per-owner", "4", "--ledger", led, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["inserted"] == 8
    r = CliRunner().invoke(main, ["ledger", "merge", str(tmp_path / "man"), "--ledger", led, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["added"] == 8, r.output
    out = pq.read_table(tmp_path / "out")
    assert out.column_names == ["post", "who", "text"] and out.num_rows == 30


def test_spark_nested_text_field_matches_single_process(tmp_path, spark):
    """--text-field post.body inside a struct: Spark replaces the child in place and the rows equal the
    single-process JSONL tagger's (which reads the same dotted path); a missing text is a bad row, an
    unknown path is refused before anything runs."""
    from ghostsent.errors import InputError
    from ghostsent.tagging.spark import tag_spark

    inp = tmp_path / "in.jsonl"
    with open(inp, "w") as f:
        for i in range(50):
            post = {"title": f"T{i}", "body": f"Post {i} opens. It goes on. It ends {i}."}
            if i == 9:
                post.pop("body")
            f.write(json.dumps({"id": f"p{i}", "author": f"user{i % 4}", "post": post}) + "\n")
    opts = dict(text_field="post.body", owner_field="author", id_field="id", max_per_owner=3, words=6, skip_bad=True)
    with Ledger(tmp_path / "l.db") as led:
        with pytest.raises(InputError, match="no column 'post.text'"):
            tag_spark(spark, led, str(inp), str(tmp_path / "o"), str(tmp_path / "m"),
                      JsonlOptions(**{**opts, "text_field": "post.text"}), fmt="jsonl")
        res = tag_spark(spark, led, str(inp), str(tmp_path / "out"), str(tmp_path / "man"), JsonlOptions(**opts),
                        fmt="jsonl")
        assert res.counts["inserted"] == 12 and res.counts["bad"] == 1
        tag_jsonl(led, str(inp), str(tmp_path / "single.jsonl"), JsonlOptions(**opts))
    single = {r["id"]: r for r in map(json.loads, (tmp_path / "single.jsonl").read_text().splitlines())}
    got = [json.loads(l) for p in sorted((tmp_path / "out").glob("part-*")) for l in p.read_text().splitlines()]
    assert len(got) == 50
    for row in got:
        want = single[row["id"]]
        if row["id"] == "p9":  # Spark's JSON writer leaves out the null body; nothing else differs
            assert row["post"] == {"title": "T9"} and want["post"] == {"title": "T9"}
        else:
            assert row == want, row["id"]
    assert sum(r["post"].get("body", "").count("Post") == 1 and len(r["post"]["body"]) > 40 for r in got) >= 12
