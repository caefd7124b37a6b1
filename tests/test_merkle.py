"""Merkle commitments: roots, O(log n) inclusion proofs, the verifier, the documented procedure, the CLI."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path

import pytest

from ghostsent.errors import InputError
from ghostsent.ledger import Ledger
from ghostsent.ledger.commitments import commitment_root, ledger_commitment, ledger_proof, verify_proof
from ghostsent.ledger.merkle import EMPTY_ROOT, ProofStep, merkle_proof, merkle_root, proof_problem
from ghostsent.wordlists import load_wordlist

DOCS = Path(__file__).resolve().parent.parent / "docs" / "ledger.md"


def _c(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def _by_hand(commitments: list[str]) -> str:
    """The tree as docs/ledger.md describes it, written independently of merkle.py."""
    level = [hashlib.sha256(b"\x00" + bytes.fromhex(c)).digest() for c in sorted(commitments)]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        pairs = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return level[0].hex()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 40])
def test_root_matches_the_documented_construction_and_every_leaf_proves(n):
    cs = [_c(i) for i in range(n)]
    root = merkle_root(list(reversed(cs)))  # order of input does not matter
    assert root == _by_hand(cs) == merkle_root(cs)
    for c in cs:
        proof = merkle_proof(cs, c)
        assert len(proof.path) <= math.ceil(math.log2(n)) and proof.root == root
        assert proof_problem(proof, root) is None


def test_small_trees_by_hand():
    a, b, c = sorted(_c(i) for i in range(3))
    la, lb, lc = (hashlib.sha256(b"\x00" + bytes.fromhex(x)).digest() for x in (a, b, c))
    assert merkle_root([a]) == la.hex()
    ab = hashlib.sha256(b"\x01" + la + lb).digest()
    assert merkle_root([a, b]) == ab.hex()
    # odd-node rule: c is carried up, not paired with itself
    assert merkle_root([a, b, c]) == hashlib.sha256(b"\x01" + ab + lc).hexdigest()
    assert merkle_root([a, b, c]) != hashlib.sha256(b"\x01" + ab + hashlib.sha256(b"\x01" + lc + lc).digest()).hexdigest()
    assert merkle_root([]) == EMPTY_ROOT
    with pytest.raises(ValueError, match="twice"):
        merkle_root([a, a])


def test_any_change_to_a_proof_fails():
    cs = [_c(i) for i in range(11)]
    root = merkle_root(cs)
    proof = merkle_proof(cs, sorted(cs)[4])
    assert proof_problem(proof, root) is None and proof.index == 4
    flip = {"left": "right", "right": "left"}
    bad = [
        dataclasses.replace(proof, commitment=_c(99)),
        dataclasses.replace(proof, index=proof.index ^ 1),
        dataclasses.replace(proof, count=5),   # leaf 4 of 5 has no sibling at the bottom
        dataclasses.replace(proof, index=proof.count),
        dataclasses.replace(proof, path=proof.path[:-1]),
        dataclasses.replace(proof, path=(ProofStep(flip[proof.path[0].side], proof.path[0].hash),) + proof.path[1:]),
        dataclasses.replace(proof, path=(ProofStep(proof.path[0].side, _c(98)),) + proof.path[1:]),
    ]
    for p in bad:
        assert proof_problem(p, root) is not None
    assert proof_problem(proof, merkle_root(cs[:-1])) is not None  # another root
    with pytest.raises(ValueError, match="not in the tree"):
        merkle_proof(cs, _c(99))


def test_an_inner_node_cannot_pose_as_a_leaf():
    """Domain separation: the hash of an inner node, offered as a 'commitment' with the path above it, fails."""
    cs = [_c(i) for i in range(4)]
    root = merkle_root(cs)
    proof = merkle_proof(cs, cs[0])
    leaf = hashlib.sha256(b"\x00" + bytes.fromhex(proof.commitment)).digest()
    sib = bytes.fromhex(proof.path[0].hash)
    inner = (hashlib.sha256(b"\x01" + sib + leaf) if proof.path[0].side == "left"
             else hashlib.sha256(b"\x01" + leaf + sib)).hexdigest()
    forged = dataclasses.replace(proof, commitment=inner, index=proof.index // 2, count=2, path=proof.path[1:])
    assert proof_problem(forged, root) is not None


def test_worked_example_in_the_docs(tmp_path):
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("**Worked example**"):]
    doc_proof = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    cs = [_c(i) for i in range(1, 6)]
    assert doc_proof == merkle_proof(cs, _c(3)).to_dict()
    assert doc_proof["root"] == merkle_root(cs)
    (tmp_path / "proof.json").write_text(json.dumps(doc_proof))
    import os
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, "docs/ledger.md", "exec"), {})  # the documented procedure accepts it ...
        tampered = {**doc_proof, "commitment": _c(4)}
        (tmp_path / "proof.json").write_text(json.dumps(tampered))
        with pytest.raises(AssertionError):                   # ... and refuses a changed one
            exec(compile(code, "docs/ledger.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert verify_proof(doc_proof, doc_proof["root"]).ok


def test_ledger_proofs_and_flat_root(tmp_path):
    en = load_wordlist("en")
    with Ledger(tmp_path / "l.db") as led:
        idents = [led.new_identifier(f"o{i}", en, n_words=4) for i in range(6)]
        com = ledger_commitment(led)
        commitments = [c for _, c in com.items]
        assert com.root == merkle_root(commitments) and com.flat_root == commitment_root(commitments)
        for ident in idents:
            proof = ledger_proof(led, ident.id, with_reveal=True)
            check = verify_proof(proof, com.root)
            assert check.ok and check.ghost == ident.text
            assert not verify_proof(proof, com.flat_root).ok
            bad = {**proof, "canonical_json": proof["canonical_json"].replace(ident.owner, "eve")}
            assert not verify_proof(bad, com.root).ok  # a reveal that does not hash to the commitment
        # a flat root published before the Merkle tree: the kept `commit --json` plus the commitment
        old = {"scheme": "ghostsent-commit-v1", "root": com.flat_root, "count": len(commitments),
               "identifiers": [{"id": i, "commitment": c} for i, c in com.items]}
        assert verify_proof(old, com.flat_root, commitment=commitments[2]).ok
        assert not verify_proof(old, com.flat_root, commitment=_c(1)).ok
        assert not verify_proof(old, merkle_root(commitments), commitment=commitments[2]).ok


@pytest.mark.parametrize("doc", [[], {"scheme": "nope"}, {"scheme": "ghostsent-merkle-v1", "commitment": "zz"},
                                 {"scheme": "ghostsent-merkle-v1", "commitment": _c(1), "index": "0", "count": 1,
                                  "path": []},
                                 {"scheme": "ghostsent-merkle-v1", "commitment": _c(1), "index": 0, "count": 2,
                                  "path": [{"side": "up", "hash": _c(2)}]},
                                 {"scheme": "ghostsent-commit-v1", "commitment": _c(1), "identifiers": "x"}])
def test_hostile_proofs_are_input_errors(doc):
    with pytest.raises(InputError):
        verify_proof(doc, _c(0))


def test_cli_commit_proof_and_verify(tmp_path):
    from click.testing import CliRunner

    from ghostsent.cli import main

    runner = CliRunner()
    ledger = str(tmp_path / "l.db")

    def run(*args: str):
        return runner.invoke(main, [*args, "--ledger", ledger] if args[0] != "verify-proof" else list(args))

    ids = [json.loads(run("new", "--owner", f"o{i}", "--words", "4", "--json").stdout)["id"] for i in range(5)]
    com = json.loads(run("commit", "--json").stdout)
    assert com["scheme"] == "ghostsent-merkle-v1" and com["count"] == 5
    res = run("commit", "--proof", ids[3])
    proof = json.loads(res.stdout)
    assert res.exit_code == 0 and proof["id"] == ids[3] and "salt" not in proof and len(proof["path"]) <= 3
    pf = tmp_path / "proof.json"
    pf.write_text(res.stdout)
    ok = run("verify-proof", str(pf), "--root", com["root"])
    assert ok.exit_code == 0 and ok.stdout.startswith("OK: ")
    bad = run("verify-proof", str(pf), "--root", com["flat_root"])
    assert bad.exit_code == 1 and "FAILED" in bad.stdout
    pf.write_text("{oops")
    res = run("verify-proof", str(pf), "--root", com["root"])
    assert res.exit_code == 3 and "proof.json: not valid JSON" in res.stderr and "Traceback" not in res.output
    shown = json.loads(run("commit", "--proof", ids[0], "--reveal").stdout)
    pf.write_text(json.dumps(shown))
    out = json.loads(run("verify-proof", str(pf), "--root", com["root"], "--json").stdout)
    assert out["ok"] and out["ghost"]
    assert run("commit", "--proof", "gs-nothere00").exit_code == 4
