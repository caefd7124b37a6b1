"""One writer process for the concurrent-writer tests: `python tests/ledger_writer.py LEDGER GO_FILE WORKER N_SHARED`.

Waits until GO_FILE exists (so all writers start together), then for each of the N_SHARED shared owners
(in its own shuffled order) gets or creates the owner's identifier and records an insertion of its own
document; then draws one identifier for a private owner. Prints one JSON line: what it was told was
stored (ids and insertion ids), so the test can check that nothing acknowledged is missing or doubled.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time


def main() -> None:
    location, go, worker, n_shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    from ghostsent.ledger import open_ledger
    from ghostsent.wordlists import load_wordlist

    en = load_wordlist("en")
    while not os.path.exists(go):
        time.sleep(0.005)
    owners = [f"shared-{i}" for i in range(n_shared)]
    random.Random(worker).shuffle(owners)
    out: dict = {"worker": worker, "owners": {}, "insertions": [], "private": None}
    with open_ledger(location, timeout=120) as led:
        for owner in owners:
            ident, _ = led.identifier_for_owner_or_new(owner, en, n_words=6)
            out["owners"][owner] = ident.id
            doc = f"w{worker}/{owner}.md"
            out["insertions"].append([led.add_insertion(ident.id, doc, "0" * 64, "1" * 64, worker, "end"), doc])
        out["private"] = led.new_identifier(f"private-{worker}", en, n_words=6).id
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
