"""The text field inside an Arrow table or record batch, top level or nested in structs (a.b): found
the way core.get_field finds it in a JSON record, and replaced with every sibling field and null kept.
Shared by the table formats (tables.py) and the Spark engine (spark.py)."""
from __future__ import annotations

from typing import Any

from ghostsent.errors import InputError


def text_path(columns: list[str], name: str) -> list[str]:
    """The column path of the text field: a top-level column called `name` if there is one, else its
    dotted parts (as core.get_field looks a field up)."""
    return [name] if name in columns or "." not in name else name.split(".")


def check_text_field(schema: Any, name: str, label: str) -> None:
    """InputError unless `name` is a string column of the Arrow `schema`, top level or nested."""
    import pyarrow as pa

    fields: Any = schema
    typ: Any = None
    for part in text_path(schema.names, name):
        idx = fields.get_field_index(part) if fields is not None else -1
        if idx < 0:
            raise InputError(f"{label}: no column {name!r} (the text field: a column, or a path a.b into structs)")
        typ = fields.field(idx).type
        fields = typ if pa.types.is_struct(typ) else None
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise InputError(f"{label}: the text field {name!r} is {typ}, not a string column")


def replaced(col: Any, path: list[str], values: list) -> Any:
    """`col` with the string child at `path` (empty: `col` itself) replaced by `values`; struct nulls kept."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not path:
        return pa.array(values, col.type)
    children = col.flatten()  # sliced to the column; parent nulls are applied again through the mask
    i = col.type.get_field_index(path[0])
    children[i] = replaced(children[i], path[1:], values)
    return pa.StructArray.from_arrays(children, fields=list(col.type), mask=col.is_null() if col.null_count else None)
