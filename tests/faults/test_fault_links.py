"""Symbolic and hard links between inputs, outputs, temporary files, lock files and the ledger.

Every refusal happens before anything is written: the input keeps every byte, nothing is recorded."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import harness
from ghostsent.ledger import Ledger
from proc import gs, one_line_error

TEXT = "First sentence here. Second one follows. Third is last.\n"


def _setup_jsonl(d: Path) -> bytes:
    data = harness.corpus(40, seed=4, hostile=False)
    (d / "in.jsonl").write_bytes(data)
    return data


JSONL_CASES = {
    "input named OUT.partial": lambda d: (d / "in.jsonl").rename(d / "out.jsonl.partial") or "out.jsonl.partial",
    "OUT.partial is a symlink to the input": lambda d: (d / "out.jsonl.partial").symlink_to(d / "in.jsonl"),
    "OUT.partial is a hard link to the input": lambda d: os.link(d / "in.jsonl", d / "out.jsonl.partial"),
    "OUT.lock is a symlink to the input": lambda d: (d / "out.jsonl.lock").symlink_to(d / "in.jsonl"),
    "OUT.lock is a hard link to the input": lambda d: os.link(d / "in.jsonl", d / "out.jsonl.lock"),
    "OUT is a symlink to the input": lambda d: (d / "out.jsonl").symlink_to(d / "in.jsonl"),
    "OUT is a hard link to the input": lambda d: os.link(d / "in.jsonl", d / "out.jsonl"),
}


@pytest.mark.parametrize("case", JSONL_CASES)
def test_tag_jsonl_links_are_refused(tmp_path, case):
    data = _setup_jsonl(tmp_path)
    inp = JSONL_CASES[case](tmp_path) or "in.jsonl"
    res = gs("tag-jsonl", inp, "out.jsonl", "--ledger", "l.db", cwd=tmp_path)
    one_line_error(res, 3)
    assert (tmp_path / inp).read_bytes() == data, case
    assert not (tmp_path / "l.db").exists() or harness.ledger_rows(tmp_path / "l.db")[0] == []


def test_tag_jsonl_out_through_a_folder_link_onto_the_input(tmp_path):
    data = _setup_jsonl(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path)
    res = gs("tag-jsonl", "in.jsonl", "link/in.jsonl", "--ledger", "l.db", cwd=tmp_path)
    one_line_error(res, 3, "in.jsonl")
    assert (tmp_path / "in.jsonl").read_bytes() == data


def test_tag_jsonl_refuses_a_ledger_that_is_its_temporary_file(tmp_path):
    data = _setup_jsonl(tmp_path)
    assert gs("new", "--ledger", "out.jsonl.partial", cwd=tmp_path).returncode == 0
    before = (tmp_path / "out.jsonl.partial").read_bytes()
    res = gs("tag-jsonl", "in.jsonl", "out.jsonl", "--ledger", "out.jsonl.partial", cwd=tmp_path)
    one_line_error(res, 3, "is the ledger")
    assert (tmp_path / "out.jsonl.partial").read_bytes() == before and (tmp_path / "in.jsonl").read_bytes() == data


def _new(d: Path) -> str:
    return json.loads(gs("new", "--words", "5", "--json", "--ledger", d / "l.db").stdout)["id"]


INSERT_CASES = {
    "--out is a symlink to the input folder": (lambda d: (d / "o").symlink_to(d), ["a.txt", "--out", "o"]),
    "the output is a symlink to the input": (
        lambda d: ((d / "o").mkdir(), (d / "o" / "a.txt").symlink_to(d / "a.txt")), ["a.txt", "--out", "o"]),
    "the output is a hard link to the input": (
        lambda d: ((d / "o").mkdir(), os.link(d / "a.txt", d / "o" / "a.txt")), ["a.txt", "--out", "o"]),
    "--out resolves onto the input through ..": (
        lambda d: ((d / "sub").mkdir(), (d / "a.txt").rename(d / "sub" / "a.txt")), ["sub/a.txt", "--out", "sub/.."]),
}


@pytest.mark.parametrize("case", INSERT_CASES)
def test_insert_links_are_refused(tmp_path, case):
    (tmp_path / "a.txt").write_text(TEXT)
    ident = _new(tmp_path)
    setup, args = INSERT_CASES[case]
    setup(tmp_path)
    src = tmp_path / args[0]
    res = gs("insert", ident, *args, "--ledger", "l.db", cwd=tmp_path)
    one_line_error(res, 3, "a.txt")
    assert src.read_text() == TEXT
    with Ledger(tmp_path / "l.db") as led:
        assert led.insertions() == []


def test_in_place_through_a_chain_of_links_and_the_same_file_twice(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "a.txt"
    target.write_text(TEXT)
    (tmp_path / "l2").symlink_to(target)
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    ident = _new(tmp_path)
    res = gs("insert", ident, "l1", "real/a.txt", "l2", "--in-place", "--json", "--ledger", "l.db", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["counts"] == {"tagged": 1}
    assert (tmp_path / "l1").is_symlink() and (tmp_path / "l2").is_symlink()
    harness.check_files({target: TEXT.encode()}, tmp_path / "l.db")
    assert (tmp_path / "real" / "a.txt.bak").read_text() == TEXT  # the backup sits next to the real file
