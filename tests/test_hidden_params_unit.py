"""fedsql/hidden_params.py without a federation: what the client sends, and what the issuer's node
accepts. The compared column's type comes from an owner's schema (a peer's Describe), so it is
checked before it is put into the cast; errors name a parameter by position, never its value."""

from __future__ import annotations

import datetime
import decimal

import pyarrow as pa
import pytest

from fedsql import hidden_params
from fedsql.errors import DataError, ProgrammingError
from planner.passes.hidden_params import HiddenSet, numbered


def test_values_round_trip_and_cast_to_the_key_type() -> None:
    values = hidden_params.decode(hidden_params.encode([7, None, "x'; --", decimal.Decimal("1.50"),
                                                         datetime.date(2024, 2, 29), True, -2.5]))
    assert values.to_pylist() == ["7", None, "x'; --", "1.50", "2024-02-29", "true", "-2.5"]
    got = hidden_params.tables([HiddenSet("__hidden_1", 0, 2, "BIGINT"), HiddenSet("__hidden_2", 2, 1, "VARCHAR"),
                                HiddenSet("__hidden_3", 3, 1, "DECIMAL(10,2)"), HiddenSet("__hidden_4", 4, 1, "DATE")],
                               values.slice(0, 5))
    assert got["__hidden_1"]["v"].to_pylist() == [7, None] and got["__hidden_2"]["v"].to_pylist() == ["x'; --"]
    assert got["__hidden_3"]["v"].to_pylist() == [decimal.Decimal("1.50")]
    assert got["__hidden_4"]["v"].to_pylist() == [datetime.date(2024, 2, 29)]


def test_a_value_of_the_wrong_type_is_named_by_position_only() -> None:
    values = hidden_params.decode(hidden_params.encode([1, "secret-key-123"]))
    with pytest.raises(DataError, match="hidden parameter 2 cannot be read as BIGINT") as err:
        hidden_params.tables([HiddenSet("__hidden_1", 0, 2, "BIGINT")], values)
    assert "secret-key-123" not in str(err.value)


@pytest.mark.parametrize("typ", ["BIGINT) AS v FROM given; SELECT 1 --", "VARCHAR; DROP TABLE given", "INT'"])
def test_a_hostile_type_from_a_peers_schema_never_reaches_the_cast(typ: str) -> None:
    values = hidden_params.decode(hidden_params.encode([1]))
    with pytest.raises(DataError, match="unusable type"):
        hidden_params.tables([HiddenSet("__hidden_1", 0, 1, typ)], values)


def test_counts_shapes_and_kinds_are_checked() -> None:
    with pytest.raises(ProgrammingError, match="has 2 hidden \\? parameters but 1 value were sent"):
        hidden_params.tables([HiddenSet("__hidden_1", 0, 2, "BIGINT")], pa.array(["1"]))
    with pytest.raises(ProgrammingError, match="positional"):
        hidden_params.encode({"a": 1})
    with pytest.raises(ProgrammingError, match="hidden parameter 1 has type bytes"):
        hidden_params.encode([b"x"])
    with pytest.raises(DataError, match="not an Arrow IPC stream"):
        hidden_params.decode(b"not arrow")
    assert numbered("SELECT '?' FROM t WHERE a = ? -- ?\n AND b IN (?, ?)") == (
        "SELECT '?' FROM t WHERE a = $1 -- ?\n AND b IN ($2, $3)", 3)
    # sqlglot reads what follows EXPLAIN as one command string: its marks are numbered all the same
    assert numbered("explain  SELECT v FROM t WHERE k IN (?, ?)") == (
        "explain  SELECT v FROM t WHERE k IN ($1, $2)", 2)
