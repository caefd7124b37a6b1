"""`ghostsent serve`: a real uvicorn server on loopback (tests/svcserver.py) over a real ledger.

Tagging goes through the one tagging core and is in the ledger before the reply; /check is the same
test as `ghostsent check` and counts in the same history; auth, size limits, JSON errors; nothing
secret in the log; a SIGKILL mid-load loses no acknowledged insertion."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from ghostsent.ledger import open_ledger

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import svcserver  # noqa: E402  (tests/ is on sys.path: conftest.py)

POST = ("Our garden club met on Tuesday. We planted tulips along the north fence. The soil was wet "
        "after the rain. Next week we will prune the roses. Everyone is welcome to join us.")


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    d = tmp_path_factory.mktemp("svc")
    s = svcserver.start_service(str(d / "l.db"), d / "server.log", "--words", "8", "--max-bytes", "4096")
    yield s
    s.stop()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_tag_records_the_insertion_before_replying(svc):
    with svc.client() as c:
        r = c.post("/tag", json={"text": POST, "owner": "ann", "document": "post/1"})
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["status"] == "tagged" and d["owner"] == "ann" and d["document"] == "post/1"
        with open_ledger(_ledger(svc)) as led:
            ident = led.get(d["identifier"])
            [ins] = [i for i in led.insertions(ident.id) if i.id == d["insertion"]]
            assert ident.owner == "ann" and ident.n_words == 8 and ident.text in d["text"]
            assert (ins.document, ins.sha256_before, ins.sha256_after) == ("post/1", _sha(POST), _sha(d["text"]))
            span = d["text"][ins.offset:ins.offset + len(d["text"]) - len(POST)]
            assert ident.text in span and d["text"][:ins.offset] + d["text"][ins.offset + len(span):] == POST
        again = c.post("/tag", json={"text": "Another post. With two sentences here.", "owner": " ann "}).json()
        assert again["identifier"] == d["identifier"]  # one identifier per owner, names normalised
        same = c.post("/tag", json={"text": d["text"], "owner": "ann"}).json()
        assert same["status"] == "already-tagged" and same["insertion"] is None and same["text"] == d["text"]
        none = c.post("/tag", json={"text": "```\ncode only\n```\n", "owner": "bob"}).json()
        assert none["status"] == "no-boundary" and none["insertion"] is None


def _ledger(svc) -> str:
    return str(svc.log_path.parent / "l.db")


def test_auth_is_required_and_constant_time_compared(svc):
    body = {"text": POST, "owner": "eve"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {svc.token}"},
                    {"Authorization": f"Bearer {svc.token}x"}, {"Authorization": f"Bearer {svc.token[:-1]}"}):
        r = httpx.post(svc.url + "/tag", json=body, headers=headers)
        assert r.status_code == 401 and r.json() == {"error": "missing or wrong bearer token"}
        assert r.headers["www-authenticate"] == "Bearer"
    with open_ledger(_ledger(svc)) as led:
        assert led.identifier_for_owner("eve") is None  # nothing happened for the refused requests


def test_limits_and_json_errors(svc):
    with svc.client() as c:
        big = c.post("/tag", json={"text": "x. " * 3000, "owner": "ann"})
        assert big.status_code == 413 and "over 4096 bytes" in big.json()["error"]

        def chunks():  # no Content-Length: the limit holds on the streamed body too
            for _ in range(10):
                yield b" " * 1000
        streamed = c.post("/tag", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        cases = [
            (c.post("/tag", content=b'{"text": "x",', headers={"content-type": "application/json"}), 422,
             "the body is not valid JSON"),
            (c.post("/tag", json={"text": 5, "owner": "ann"}), 422, "field text:"),
            (c.post("/tag", json={"text": "A b. C d.", "owner": "a\nb"}), 400, "single line"),
            (c.post("/check", json={"identifier": "gs-0000000000", "replies": ["x"]}), 404, "unknown identifier"),
            (c.post("/check", json={"identifier": "gs-0000000000", "replies": ["x"] * 65}), 422, "field replies"),
            (c.post("/check", json={"identifier": "gs-0000000000", "replies": ["x"], "alpha": 0}), 422, "field alpha"),
            (c.get("/nothing"), 404, "Not Found"),
            (c.get("/tag"), 405, "Method Not Allowed"),
        ]
        for r, status, text in cases:
            assert r.status_code == status and r.headers["content-type"] == "application/json", r.text
            assert text in r.json()["error"]


def test_identifiers_never_show_passphrases_unless_allowed(svc, tmp_path):
    with svc.client() as c:
        c.post("/tag", json={"text": POST, "owner": "cy"})
        [d] = c.get("/identifiers/cy").json()
        assert "words" not in d and "text" not in d and d["commitment"] and d["owner"] == "cy"
        assert c.get("/identifiers/cy", params={"reveal": "true"}).status_code == 403
    with open_ledger(_ledger(svc)) as led:
        ident = led.identifier_for_owner("cy")
    assert ident.passphrase not in json.dumps(d)
    other = svcserver.start_service(str(tmp_path / "l.db"), tmp_path / "s.log", "--allow-reveal")
    try:
        with other.client() as c:
            c.post("/tag", json={"text": POST, "owner": "cy"})
            [shown] = c.get("/identifiers/cy", params={"reveal": "true"}).json()
            assert shown["words"] and shown["text"]
            assert "words" not in c.get("/identifiers/cy").json()[0]  # still only when asked
    finally:
        other.stop()


def test_check_is_the_cli_check_and_counts_in_the_same_history(svc, tmp_path):
    with svc.client() as c:
        ident_id = c.post("/tag", json={"text": POST, "owner": "dee"}).json()["identifier"]
        with open_ledger(_ledger(svc)) as led:
            ident = led.get(ident_id)
        first = c.post("/check", json={"identifier": ident_id, "replies": [ident.text]}).json()
        assert first["test_number"] == 1 and first["p_value"] < 1e-6 and first["detected"]
        assert first["best_matches"] == first["tail_words"] >= 1
        assert not any(w in json.dumps(first) for w in ident.words)  # numbers only, no passphrase words
        reply = tmp_path / "r.txt"
        reply.write_text(ident.text, encoding="utf-8")
        from ghostsent.cli import main

        cli = json.loads(CliRunner().invoke(main, ["check", ident_id, "--reply", str(reply), "--ledger",
                                                   _ledger(svc), "--json"]).stdout)
        assert cli["test_number"] == 2 and cli["p_value"] == first["p_value"]
        third = c.post("/check", json={"identifier": ident_id, "replies": ["nothing like it"]}).json()
        assert third["test_number"] == 3 and third["p_value"] == 1.0 and not third["detected"]


def test_log_holds_no_token_and_no_passphrase(svc):
    """Runs after the tests above (same server): every request they made is in the log, one line each."""
    log = svc.log()
    assert "POST /tag 200" in log and "POST /check 200" in log and "GET /identifiers/cy 200" in log
    assert svc.token not in log and "Bearer" not in log and "garden" not in log
    with open_ledger(_ledger(svc)) as led:
        for ident in led.identifiers():
            assert ident.passphrase not in log and ident.text not in log
            assert not any(f" {w} " in log for w in ident.words if len(w) > 3)


def test_start_without_token_or_with_a_bad_ledger_is_one_line(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "GHOSTSENT_SERVE_TOKEN"}
    env["PYTHONPATH"] = str(svcserver.ROOT)
    res = subprocess.run([sys.executable, "-m", "ghostsent", "serve", "--ledger", str(tmp_path / "l.db")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 3 and "GHOSTSENT_SERVE_TOKEN" in res.stderr and "Traceback" not in res.stderr
    env["GHOSTSENT_SERVE_TOKEN"] = "t" * 20
    res = subprocess.run([sys.executable, "-m", "ghostsent", "serve", "--ledger", str(tmp_path / "nodir" / "l.db")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 4 and "does not exist" in res.stderr and "Traceback" not in res.stderr
    assert "t" * 20 not in res.stderr


def test_serve_on_a_postgresql_ledger(pg_url, tmp_path):
    s = svcserver.start_service(pg_url, tmp_path / "s.log")
    try:
        with s.client() as c:
            d = c.post("/tag", json={"text": POST, "owner": "pat", "document": "p"}).json()
        with open_ledger(pg_url) as led:
            assert [i.id for i in led.insertions(d["identifier"])] == [d["insertion"]]
        pw = pg_url.split("://")[1].split("@")[0].split(":")[1]
        assert pw not in s.log()
    finally:
        s.stop()


def test_sigkill_mid_load_loses_no_acknowledged_insertion(ledger_at, tmp_path):
    """30 clients tag posts as fast as they can; the server is killed with SIGKILL mid-load. Every
    insertion a 200 reply acknowledged is in the ledger afterwards, as acknowledged; the ledger opens and
    the restarted server tags again. On both backends."""
    ledger = ledger_at.location("l")
    s = svcserver.start_service(ledger, tmp_path / "s.log")
    acked: list[dict] = []
    lock, stop = threading.Lock(), threading.Event()

    def client(n: int) -> None:
        with s.client(timeout=10) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = c.post("/tag", json={"text": f"Post {n}-{i} begins here. It ends here.", "owner": f"o{n % 7}",
                                             "document": f"c{n}/{i}"})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(r.json())

    threads = [threading.Thread(target=client, args=(n,)) for n in range(30)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    s.kill9()  # mid-load: requests are in flight
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 150
    with open_ledger(ledger) as led:
        stored = {i.id: i for i in led.insertions()}
        for a in acked:
            ins = stored.get(a["insertion"])
            assert ins is not None, a
            assert (ins.identifier_id, ins.document, ins.sha256_after) == (a["identifier"], a["document"],
                                                                          _sha(a["text"]))
        assert len({i.owner for i in led.identifiers()}) == len(led.identifiers()) <= 7
    again = svcserver.start_service(ledger, tmp_path / "s2.log", token=s.token)
    try:
        with again.client() as c:
            assert c.post("/tag", json={"text": POST, "owner": "o1"}).json()["status"] == "tagged"
    finally:
        again.stop()
