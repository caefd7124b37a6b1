"""Survival of ghost sentences on the way to a training set (issue 11).

* `screen`: would a text, template or word list trip the filters real pretraining pipelines apply?
  (offline LDNOOBW lists and C4's rules; needed at run time by `new`, `insert` and `tag-jsonl`).
* `stages`, `pipeline`, `report`: the `ghostsent survive` audit, which runs tagged documents through
  real pipeline stages (Markdown rendering, trafilatura/resiliparse extraction, datatrove filters,
  deduplication, normalisation) and counts the ghost copies that come out.

Nothing here imports torch; the pipeline stages import their libraries (the `survive` extra) only
when they run.
"""
