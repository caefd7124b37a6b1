"""`ghostsent tag` on Parquet and CSV (pyarrow), and `ghostsent ledger merge` on manifests: real files,
real ledger, the CLI as users run it."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pa = pytest.importorskip("pyarrow")
import pyarrow.csv as pcsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ghostsent.cli import main  # noqa: E402
from ghostsent.ledger import Ledger  # noqa: E402
from ghostsent.ledger.manifest import write_manifest  # noqa: E402
from ghostsent.sentences import Boundary  # noqa: E402


def table(n=60):
    return pa.table({
        "id": pa.array(range(n), pa.int64()),
        "author": [f"u{i % 4}" for i in range(n)],
        "body": [f"Post {i} starts. It has a middle. It ends." for i in range(n)],
        "score": pa.array([i / 7 for i in range(n)], pa.float64()),
        "meta": pa.array([{"lang": "en", "n": i} for i in range(n)]),
    })


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_tag_table_keeps_schema_and_every_other_column(tmp_path, fmt):
    t = table()
    if fmt == "csv":
        t = t.drop_columns(["meta"])
    inp, out, led = tmp_path / f"in.{fmt}", tmp_path / f"out.{fmt}", tmp_path / "l.db"
    pq.write_table(t, inp) if fmt == "parquet" else pcsv.write_csv(t, inp)
    r = run("tag", inp, out, "--text-field", "body", "--owner-field", "author", "--id-field", "id",
            "--max-per-owner", "2", "--ledger", led, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["inserted"] == 8 and s["owners"] == 4 and s["rows"] == 60
    before = pq.read_table(inp) if fmt == "parquet" else pcsv.read_csv(inp, convert_options=pcsv.ConvertOptions(
        column_types={c: pa.string() for c in t.column_names}))
    after = pq.read_table(out) if fmt == "parquet" else pcsv.read_csv(out, convert_options=pcsv.ConvertOptions(
        column_types={c: pa.string() for c in t.column_names}))
    assert after.schema == before.schema
    for col in before.column_names:  # column by column: only the text column changes, only in 8 rows
        if col != "body":
            assert after.column(col).equals(before.column(col)), col
    with Ledger(led) as l:
        ghosts = {i.owner: i.text for i in l.identifiers()}
        docs = sorted(i.document for i in l.insertions())
        [run_] = [x for x in l.runs() if x["kind"] == "tag"]
    changed = [k for k, (a, b) in enumerate(zip(before.column("body").to_pylist(), after.column("body").to_pylist()))
               if a != b]
    assert len(changed) == 8
    for k in changed:
        a, b = before.column("body")[k].as_py(), after.column("body")[k].as_py()
        g = ghosts[before.column("author")[k].as_py()]
        assert g in b and b.replace(Boundary(0, "after").inserted(g), "", 1) == a
    assert docs == sorted(f"{inp}:id={before.column('id')[k].as_py()}" for k in changed)
    assert run_["settings"]["selection"]["rule"] == "keyed-hmac-sha256-v1"
    assert "secret" not in json.dumps(run_)  # the rule is recorded by the secret's id only
    # a second run into a new file chooses the same rows and bytes (the keyed hash, no state)
    r2 = run("tag", inp, tmp_path / f"again.{fmt}", "--text-field", "body", "--owner-field", "author",
             "--id-field", "id", "--max-per-owner", "2", "--ledger", led, "--json")
    assert r2.exit_code == 0 and (tmp_path / f"again.{fmt}").read_bytes() == out.read_bytes()


def test_tag_table_bad_row_is_one_line_and_writes_nothing(tmp_path):
    t = pa.table({"author": ["a", None, "c"], "body": ["One. Two.", "Three. Four.", "Five. Six."]})
    inp, out, led = tmp_path / "in.parquet", tmp_path / "out.parquet", tmp_path / "l.db"
    pq.write_table(t, inp)
    r = run("tag", inp, out, "--text-field", "body", "--owner-field", "author", "--ledger", led)
    assert r.exit_code == 3 and "row 2: missing owner field 'author'" in r.output and "Traceback" not in r.output
    assert not out.exists()
    with Ledger(led) as l:
        assert l.insertions() == []


def test_ledger_merge_is_all_or_nothing_and_idempotent(tmp_path):
    led = tmp_path / "l.db"
    with Ledger(led) as l:
        ident = l.new_identifier("alice", "en", n_words=6, seed=1)
    good = [(ident.id, f"doc{i}", "a" * 64, f"{i:064x}", i, "latter-half") for i in range(5)]
    write_manifest(good + good[:2], tmp_path / "m.parquet", {"job": "t"})  # a repeat inside the manifest too
    r = run("ledger", "merge", tmp_path / "m.parquet", "--ledger", led, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) | {"files": None} == {"files": None, "rows": 7, "added": 5, "skipped": 2,
                                                       "jobs": [{"format": "ghostsent-insertions-v1", "job": "t"}]}
    r = run("ledger", "merge", tmp_path / "m.parquet", "--ledger", led, "--json")
    assert json.loads(r.stdout)["added"] == 0 and json.loads(r.stdout)["skipped"] == 7
    bad = good + [(ident.id, "doc9", "a" * 64, "nothex", 1, "latter-half")]
    write_manifest([(ident.id, "new", "b" * 64, "c" * 64, 0, "end")] + bad, tmp_path / "bad.parquet")
    r = run("ledger", "merge", tmp_path / "bad.parquet", "--ledger", led)
    assert r.exit_code == 3 and "bad.parquet, row 7: field 'sha256_after'" in r.output
    write_manifest([("gs-0000000000", "x", "b" * 64, "c" * 64, 0, "end")], tmp_path / "unknown.parquet")
    r = run("ledger", "merge", tmp_path / "unknown.parquet", "--ledger", led)
    assert r.exit_code == 4 and "gs-0000000000 is not in" in r.output
    with Ledger(led) as l:
        assert len(l.insertions()) == 5  # neither bad manifest added its good rows


@pytest.mark.parametrize("ext", [".jsonl.gz", ".jsonl.zst"])
def test_tag_compressed_jsonl_equals_plain_and_resumes(tmp_path, ext):
    import gzip

    import zstandard

    from ghostsent.tagging import tag_jsonl
    from ghostsent.tagging.jsonl import JsonlOptions

    plain = b"".join(json.dumps({"owner": f"o{i % 3}", "text": f"Line {i} here. Then more. End."}).encode() + b"\n"
                     for i in range(300))
    comp = gzip.compress(plain) if ext.endswith("gz") else zstandard.ZstdCompressor().compress(plain)
    (tmp_path / "in.jsonl").write_bytes(plain)
    (tmp_path / f"in{ext}").write_bytes(comp)
    r = run("tag", tmp_path / "in.jsonl", tmp_path / "ref.jsonl", "--max-per-owner", "20", "--seed", "4",
            "--ledger", tmp_path / "ref.db")
    assert r.exit_code == 0, r.output
    opts = JsonlOptions(max_per_owner=20, seed=4, checkpoint_every=50)

    class Crash(Exception):
        pass

    def crash(n):
        if n == 2:
            raise Crash()

    out = tmp_path / f"out{ext}"
    with Ledger(tmp_path / "l.db") as led:
        with pytest.raises(Crash):
            tag_jsonl(led, str(tmp_path / f"in{ext}"), str(out), opts, after_checkpoint=crash)
        assert not out.exists()
        s = tag_jsonl(led, str(tmp_path / f"in{ext}"), str(out), JsonlOptions(max_per_owner=20, seed=4,
                                                                               checkpoint_every=50, resume=True))
        assert s["resumed_from_line"] == 100 and s["inserted"] == 60 and len(led.insertions()) == 60
    data = out.read_bytes()
    got = gzip.decompress(data) if ext.endswith("gz") else zstandard.ZstdDecompressor().decompress(data)
    assert got == (tmp_path / "ref.jsonl").read_bytes() and got != plain
    assert not (tmp_path / f"out{ext}.partial").exists()
    (tmp_path / f"cut{ext}").write_bytes(comp[: len(comp) // 2])
    r = run("tag", tmp_path / f"cut{ext}", tmp_path / f"o2{ext}", "--ledger", tmp_path / "l.db")
    assert r.exit_code == 3 and "Traceback" not in r.output and not (tmp_path / f"o2{ext}").exists(), r.output


def test_tag_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    t = table(40)
    datasets.Dataset(datasets.table.InMemoryTable(t)).save_to_disk(str(tmp_path / "ds"))
    pq.write_table(t, tmp_path / "same.parquet")
    led = tmp_path / "l.db"
    common = ["--text-field", "body", "--owner-field", "author", "--fraction", "0.5", "--ledger", led, "--json"]
    r = run("tag", tmp_path / "ds", tmp_path / "out", *common)
    assert r.exit_code == 0, r.output
    r2 = run("tag", tmp_path / "same.parquet", tmp_path / "out.parquet", *common)
    assert r2.exit_code == 0, r2.output
    out = datasets.load_from_disk(str(tmp_path / "out"))
    before = datasets.load_from_disk(str(tmp_path / "ds"))
    assert out.features == before.features and out.num_rows == 40
    # the dataset and the same rows as Parquet get the same ghosts in the same places (one rule)
    assert out.data.table.equals(pq.read_table(tmp_path / "out.parquet"))
    assert 0 < json.loads(r.stdout)["inserted"] < 40
    for col in ("id", "author", "score", "meta"):
        assert out[col] == before[col]


def test_tag_parquet_nested_text_field_keeps_siblings_and_null_structs(tmp_path):
    """--text-field post.body reaches into a struct column: only that child changes; its siblings, the
    struct's nulls (a row without a post is a bad row, copied through with --skip-bad) and every other
    column stay; the same rows get the same bytes as the flat column would."""
    n = 40
    posts = [None if i == 7 else {"title": f"T{i}", "body": f"Post {i} starts. It has a middle. It ends."}
             for i in range(n)]
    t = pa.table({"id": pa.array(range(n), pa.int64()), "author": [f"u{i % 4}" for i in range(n)],
                  "post": pa.array(posts)})
    flat = pa.table({"id": t["id"], "author": t["author"],
                     "body": [p["body"] if p else None for p in posts]})
    inp, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(t, inp)
    pq.write_table(flat, tmp_path / "flat.parquet")
    args = ("--owner-field", "author", "--id-field", "id", "--max-per-owner", "3", "--seed", "3", "--json")
    r = run("tag", inp, out, "--text-field", "post.body", "--skip-bad", "--ledger", tmp_path / "a.db", *args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["inserted"] == 12 and s["bad"] == 1 and "post.body" in s["bad_rows"][0]["reason"]
    r2 = run("tag", tmp_path / "flat.parquet", tmp_path / "flat-out.parquet", "--text-field", "body", "--skip-bad",
             "--ledger", tmp_path / "b.db", *args)
    assert r2.exit_code == 0, r2.output
    after, flat_after = pq.read_table(out), pq.read_table(tmp_path / "flat-out.parquet")
    assert after.schema == t.schema and after["id"] == t["id"] and after["author"] == t["author"]
    got = after["post"].to_pylist()
    assert got[7] is None and [p["title"] for p in got if p] == [p["title"] for p in posts if p]
    assert [p["body"] if p else None for p in got] == flat_after["body"].to_pylist()
    changed = sum(a != b for a, b in zip(got, posts))
    assert changed == 12


@pytest.mark.parametrize("name, message", [("post.nope", "no column 'post.nope'"),
                                           ("post", "is struct<"), ("id", "is int64, not a string")])
def test_tag_table_text_field_must_be_a_string_column(tmp_path, name, message):
    t = pa.table({"id": pa.array([1], pa.int64()), "author": ["a"], "post": pa.array([{"body": "One. Two."}])})
    pq.write_table(t, tmp_path / "in.parquet")
    r = run("tag", tmp_path / "in.parquet", tmp_path / "out.parquet", "--text-field", name, "--owner-field", "author",
            "--ledger", tmp_path / "l.db")
    assert r.exit_code == 3 and message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out.parquet").exists()


def test_only_the_fields_the_rules_read_become_python_rows_and_the_result_equals_jsonl(tmp_path):
    """tag_arrow converts the text, owner and id columns only (a nested owner path reads its struct);
    the tagged texts, insertions and documents are those of the same records tagged as JSONL."""
    from ghostsent.tagging import JsonlOptions, tag_jsonl
    from ghostsent.tagging.tables import read_columns

    n = 40
    t = pa.table({
        "id": pa.array(range(n), pa.int64()), "wide": ["x" * 50] * n,
        "body": [f"Row {i} begins here. Then a middle part. Done now." for i in range(n)],
        "meta": pa.array([{"author": f"u{i % 3}", "n": i} for i in range(n)]),
    })
    opts = dict(text_field="body", owner_field="meta.author", id_field="id", max_per_owner=3, seed=11)
    assert [t.column_names[i] for i in read_columns(t.column_names, JsonlOptions(**opts).policy())] == \
        ["id", "body", "meta"]
    pq.write_table(t, tmp_path / "in.parquet")
    with open(tmp_path / "in.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in t.to_pylist())
    outs = {}
    for fmt in ("parquet", "jsonl"):
        with Ledger(tmp_path / f"{fmt}.db") as led:
            if fmt == "jsonl":
                tag_jsonl(led, str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), JsonlOptions(**opts))
                texts = [json.loads(x)["body"] for x in open(tmp_path / "out.jsonl")]
            else:
                from ghostsent.tagging.tables import tag_table
                tag_table(led, str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), JsonlOptions(**opts),
                          "parquet")
                texts = pq.read_table(tmp_path / "out.parquet").column("body").to_pylist()
            rows = sorted((int(x.document.split("=")[-1]), x.offset) for x in led.insertions())
            assert [k for k in range(n) if texts[k] != t.column("body")[k].as_py()] == [k for k, _ in rows]
            outs[fmt] = rows
    # the same rows chosen (the --seed keyed rule), the ghost at the same offsets, every other column kept
    assert len(outs["parquet"]) == 9 and outs["parquet"] == outs["jsonl"]
    assert pq.read_table(tmp_path / "out.parquet").drop_columns(["body"]).equals(t.drop_columns(["body"]))
