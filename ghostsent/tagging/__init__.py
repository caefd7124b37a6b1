"""Putting ghosts into documents and recording every insertion in the ledger.

    core.py       THE rules: tag_text / tag_record, TagPolicy, RecordRules (every front end calls these)
    selection.py  which of an owner's records get the ghost and where: a keyed hash (docs/scale.md)
    documents.py  text files as bytes and text (encoding, BOM kept)
    files.py      tag_files: files and folders, with --out or in place
    jsonl.py      tag_jsonl: a JSONL corpus, streaming, checkpointed, resumable (JsonlTagger, Checkpoint)
    codecs.py     .gz / .zst JSONL in and out
    parallel.py   --workers N: chunks of lines tagged end to end in N - 1 processes and this one, in order
    tables.py     Parquet, CSV and Hugging Face datasets through pyarrow (tag_table, tag_hf_dataset)
    splice.py     inserting into one string field of a raw JSON line
    spark.py      the same rules as a Spark job (needs pyspark; imported only by name)
    datatrove.py  GhostTagger, a datatrove PipelineStep (needs datatrove; imported only by name)

Spark and datatrove insertions come back to the ledger through ledger/manifest.py (`ghostsent ledger merge`).
"""
from __future__ import annotations

from ghostsent.tagging.core import TagPolicy, tag_record, tag_text
from ghostsent.tagging.files import FileResult, expand_paths, tag_files
from ghostsent.tagging.jsonl import Checkpoint, JsonlOptions, checkpoint_key, tag_jsonl

__all__ = ["TagPolicy", "tag_record", "tag_text", "FileResult", "expand_paths", "tag_files", "Checkpoint",
           "JsonlOptions", "checkpoint_key", "tag_jsonl"]
