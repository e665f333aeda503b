"""The values of hidden `?` parameters (`SET fedsql.hidden_params = on`): client → own node only.

The client sends them beside the SQL text (ExecuteRequest.hidden_params) as one Arrow column of
their text forms; the issuer's node casts each to the type of the column it is compared with
(planner/passes/hidden_params.py HiddenSet) and keeps them for the query's run, where only its
LocalQuery steps read them before they are secret-shared. They are never put in the SQL text,
the plan, its hash, an audit record, a log line or an error message: errors name a parameter by
its position.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import re
from typing import Any, Mapping, Sequence

import duckdb
import pyarrow as pa

from fedsql.errors import DataError, ProgrammingError

MAX_BYTES = 64 << 20
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_ ]*(\(\d+(, ?\d+)?\))?")  # a type name as schemas spell it: DECIMAL(10,2)


def _text(value: Any, position: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise DataError(f"hidden parameter {position} is not a finite number")
        return repr(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise DataError(f"hidden parameter {position} is not a finite decimal")
        return str(value)
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, str):
        if "\x00" in value:
            raise DataError(f"hidden parameter {position} contains a NUL character")
        return value
    raise ProgrammingError(f"hidden parameter {position} has type {type(value).__name__}; use int, float, "
                           "Decimal, str, bool, date, datetime or None")


def encode(parameters: Sequence[Any] | Mapping[str, Any]) -> bytes:
    """The parameters as the request carries them: an Arrow IPC stream of one string column."""
    if isinstance(parameters, Mapping) or isinstance(parameters, (str, bytes)) or not isinstance(parameters, Sequence):
        raise ProgrammingError("hidden parameters are positional: pass a sequence of values for the ? marks")
    column = pa.array([_text(v, i) for i, v in enumerate(parameters, 1)], pa.string())
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, pa.schema([("v", pa.string())])) as writer:
        writer.write_table(pa.table({"v": column}))
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.Array:
    """The request's parameters (one string per ?), or a clear error for anything else."""
    if len(data) > MAX_BYTES:
        raise DataError(f"the hidden parameters take {len(data)} bytes; the limit is {MAX_BYTES}")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError):
        raise DataError("the hidden parameters are not an Arrow IPC stream") from None
    if table.schema != pa.schema([("v", pa.string())]):
        raise DataError("the hidden parameters must be one string column 'v' (fedsql.hidden_params.encode)")
    return table.column("v").combine_chunks()


def tables(sets: Sequence[Any], values: pa.Array) -> dict[str, pa.Table]:
    """Each HiddenSet's values cast to its column's type, as the table its LocalQuery reads."""
    need = sum(s.count for s in sets)
    if need != len(values):
        raise ProgrammingError(f"the statement has {need} hidden ? parameter{'s' if need != 1 else ''} but "
                               f"{len(values)} value{'s' if len(values) != 1 else ''} were sent")
    out = {}
    con = duckdb.connect()
    try:
        for s in sets:
            if not _TYPE.fullmatch(s.type):
                raise DataError(f"the column compared with hidden parameter {s.first + 1} has an unusable type")
            given = values.slice(s.first, s.count)
            con.register("given", pa.table({"v": given}))
            cast = con.sql(f"SELECT TRY_CAST(v AS {s.type}) AS v FROM given").to_arrow_table()
            con.unregister("given")
            bad = (given.is_valid().to_numpy(zero_copy_only=False)
                   & cast.column("v").is_null().to_numpy(zero_copy_only=False))  # a value TRY_CAST could not read
            if bad.any():
                raise DataError(f"hidden parameter {s.first + int(bad.argmax()) + 1} cannot be read as {s.type}, the "
                                "type of the column it is compared with; pass a value of that type")
            out[s.name] = cast
    finally:
        con.close()
    return out
