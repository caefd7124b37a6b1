"""The ledger's selection secret: the key of the keyed hash that decides which records get a ghost and
where (ghostsent.tagging.selection). Created once per ledger on first use (32 bytes from `secrets`),
stored in the ledger (table ledger_secrets), never logged: runs and manifests name it by its id only.
"""
from __future__ import annotations

import secrets
from typing import Any

SELECTION_SECRET = "selection"


def selection_secret(ledger: Any) -> bytes:
    """The ledger's selection secret, created on first use."""
    return ledger.secret(SELECTION_SECRET, lambda: secrets.token_bytes(32))
