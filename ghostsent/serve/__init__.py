"""The tagging service (`ghostsent serve`): FastAPI routes over the tagging core and the ledger.

    service.py   ServiceConfig, Service (the work behind each route), LedgerWorker (one ledger thread,
                 group commit), Guard (auth, body limit, request log), create_app, serve

It sits above tagging/, ledger/ and detection/ (it calls tag_record and check_recorded) and below cli/.
"""
from __future__ import annotations

from ghostsent.serve.service import ServiceConfig, create_app, serve

__all__ = ["ServiceConfig", "create_app", "serve"]
