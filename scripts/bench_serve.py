"""Load-test `ghostsent serve` on loopback: throughput and latency of POST /tag, against the same work
done in-process in the same run.

    python scripts/bench_serve.py [--requests 10000] [--concurrency 50] [--owners 200] [--workers 1]
                                  [--ledger PATH_OR_POSTGRESQL_URL | --postgres]

(a) the service: a real uvicorn server (`ghostsent serve`, started here, token in the environment),
    `--requests` POST /tag requests over `--concurrency` keep-alive connections, every one committed
    to the ledger before its reply; reports requests/s, p50, p99 and max latency, and checks that the
    ledger holds one insertion per 200 reply;
(b) the baseline: the same tagging + ledger commit (ghostsent.serve.service.Service.tag) called in-process,
    one at a time, on a fresh ledger of the same kind: the cost of HTTP, JSON and the event loop is
    the difference. Prints (a)/(b) throughput.
Bounded: --requests caps the run; nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

TEXT = ("Our garden club met on Tuesday {i}. We planted tulips along the north fence. The soil was wet after "
        "the rain. Next week we will prune the roses. Everyone is welcome to join us.")


async def _connection(host: str, port: int, token: str, jobs: Iterator[int], owners: int,
                      latencies: list[float], statuses: list[int]) -> None:
    """One keep-alive HTTP/1.1 connection sending POST /tag requests one after another. A minimal client
    on asyncio streams: a general client (httpx) costs more CPU per request than the server does, and
    on a small machine the load generator would be what is measured."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in jobs:
            body = json.dumps({"text": TEXT.format(i=i), "owner": f"owner{i % owners}",
                               "document": f"post/{i}"}).encode()
            head = (f"POST /tag HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses.append(int(status_line.split()[1]))
    finally:
        writer.close()


async def _load(url: str, token: str, n: int, concurrency: int, owners: int) -> tuple[list[float], int]:
    host, port = url.split("://")[1].split(":")
    latencies: list[float] = []
    statuses: list[int] = []
    jobs = iter(range(n))
    await asyncio.gather(*(_connection(host, int(port), token, jobs, owners, latencies, statuses)
                           for _ in range(concurrency)))
    return latencies, sum(s == 200 for s in statuses)


def bench_service(ledger: str, a: argparse.Namespace) -> dict:
    import svcserver

    from ghostsent.ledger import open_ledger

    def stored() -> int:
        with open_ledger(ledger, create=True) as led:
            return len(led.insertions())

    before = stored()
    log = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "server.log"
    svc = svcserver.start_service(ledger, log, "--workers", str(a.workers), "--words", "12")
    try:
        asyncio.run(_load(svc.url, svc.token, min(200, a.requests), a.concurrency, a.owners))  # warm-up
        t0 = time.perf_counter()
        lat, ok = asyncio.run(_load(svc.url, svc.token, a.requests, a.concurrency, a.owners))
        wall = time.perf_counter() - t0
    finally:
        svc.stop()
    lat.sort()
    return {"rps": len(lat) / wall, "ok": ok, "n": len(lat), "stored": stored() - before,
            "p50": statistics.median(lat) * 1000, "p99": lat[int(0.99 * (len(lat) - 1))] * 1000,
            "max": lat[-1] * 1000}


def bench_inprocess(ledger: str, n: int, owners: int) -> float:
    from ghostsent.ledger import open_ledger
    from ghostsent.serve.service import Service, ServiceConfig

    with open_ledger(ledger, create=True) as led:
        svc = Service(ServiceConfig(ledger), led)
        for i in range(min(200, n)):
            svc.tag(TEXT.format(i=i), f"owner{i % owners}", f"warm/{i}")
        t0 = time.perf_counter()
        for i in range(n):
            svc.tag(TEXT.format(i=i), f"owner{i % owners}", f"post/{i}")
        return n / (time.perf_counter() - t0)


def _fresh(base: str | None, name: str) -> str:
    if base and "://" in base:
        return base  # a PostgreSQL URL: the caller gives an empty database per run
    return str(Path(tempfile.mkdtemp(prefix="bench-serve-")) / f"{name}.db")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--owners", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--baseline", type=int, default=2000, help="in-process calls for the baseline")
    ap.add_argument("--ledger", default=None, help="SQLite path or postgresql:// URL [default: a fresh temp file]")
    ap.add_argument("--postgres", action="store_true",
                    help="start a local PostgreSQL server (fsync on; tests/pgserver.py) and use a fresh database on it")
    a = ap.parse_args()
    os.environ.setdefault("GHOSTSENT_LEDGER_TIMEOUT", "60")
    if a.postgres:
        import pgserver

        server = pgserver.start_postgres(pgserver.find_bindir(), durable=True)
        try:
            a.ledger = pgserver.create_database(server, "bench")
            run(a)
        finally:
            server.stop()
    else:
        run(a)


def run(a: argparse.Namespace) -> None:

    base = bench_inprocess(_fresh(a.ledger, "baseline"), a.baseline, a.owners)
    s = bench_service(_fresh(a.ledger, "service"), a)
    where = "PostgreSQL" if a.ledger and "://" in a.ledger else "SQLite"
    print(f"ledger: {where}")
    print(f"in-process Service.tag + ledger commit: {base:8.0f} tags/s (baseline)")
    print(f"ghostsent serve, {a.workers} worker(s), {a.concurrency} concurrent clients, {s['n']} requests: "
          f"{s['rps']:.0f} req/s, p50 {s['p50']:.1f} ms, p99 {s['p99']:.1f} ms, max {s['max']:.1f} ms")
    print(f"ratio service/in-process: {s['rps'] / base:.2f}x;  {s['ok']} replies 200, "
          f"{s['stored']} insertions in the ledger (incl. warm-up)")


if __name__ == "__main__":
    main()
