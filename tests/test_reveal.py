"""The interpreter end to end on the in-process transport (no sockets): a data owner and an
issuer outside the compute parties, a string GROUP BY key of several words, the result opened to
the issuer only (executors/reveal.py) and compared with DuckDB; and the ColumnsHeader a modified
compute party could forge (executors/wire_header.py) refused as a protocol error."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from executors.runtime import PartyRun
from executors.transport import run_in_process
from executors.transport_errors import MessageError
from plan.physical import (
    AgreeWidth, Combine, Encoding, GroupCombine, ObliviousGroup, PhysicalPlan, RevealColumn, RevealResult,
    ShareColumn, ShareTable, with_hash,
)
from tests.operator_harness import duckdb_rows

COMPUTE = ("c0", "c1", "c2")
INT = Encoding("int", 0, "BIGINT")
STR = Encoding("string", 0, "VARCHAR")
K = ["apple", None, "a much longer key than one word", "apple", "", None, "Apple", "apple"]
X = [3, -4, None, 0, 7, 2, -1, None]
FRAGMENT = pa.table({  # the owner's partials: key, its validity, SUM and COUNT parts of x
    "k": pa.array([k or "" for k in K], pa.string()), "k__v": pa.array([int(k is not None) for k in K], pa.int64()),
    "x": pa.array([x or 0 for x in X], pa.int64()), "c": pa.array([int(x is not None) for x in X], pa.int64())})


def plan(issuer: str, oblivious: bool) -> PhysicalPlan:
    columns = (ShareColumn("k", STR, "key"), ShareColumn("k__v", INT, "key"), ShareColumn("x", INT),
               ShareColumn("c", INT))
    combine = (Combine("x", "sum"), Combine("c", "sum"))
    group = (ObliviousGroup if oblivious else GroupCombine)("g", "s", ("k", "k__v"), combine)
    reveal = (RevealColumn("k", "key", "k", STR, count="k__v"), RevealColumn("total", "sum_or_null", "x", INT, count="c"))
    steps = (AgreeWidth("w", (("d0", "f"),), "k"), ShareTable("s", "f", "d0", columns, width_from="w"), group,
             RevealResult("r", "g", issuer, reveal, secret_keys=oblivious))
    return with_hash(PhysicalPlan(issuer=issuer, compute=COMPUTE, schemas=(), steps=steps, result="r",
                                  output=(("k", "VARCHAR"), ("total", "BIGINT")), leakage=()))


def run(p: PhysicalPlan, tamper=None) -> dict[str, object]:
    def party(ch):
        if tamper is not None and ch.me == "c0":
            tamper(ch)
        run = PartyRun(ch.me, p, None, ch)
        if ch.me == "d0":
            run.plain["f"] = FRAGMENT
        return run.run()

    return run_in_process({q: party for q in p.participants}, plan_hash=None)


def duckdb_result() -> Counter:
    t = pa.table({"k": pa.array(K, pa.string()), "x": pa.array(X, pa.int64())})
    return Counter(duckdb_rows("SELECT k, sum(x) FROM t GROUP BY k", t))


@pytest.mark.parametrize("oblivious", [False, True], ids=["sizes", "oblivious"])
@pytest.mark.parametrize("issuer", ["i0", "c1"], ids=["outside issuer", "compute issuer"])
def test_only_the_issuer_gets_the_result_and_it_matches_duckdb(issuer: str, oblivious: bool) -> None:
    results = run(plan(issuer, oblivious))
    assert all(results[q] is None for q in results if q != issuer)
    table = results[issuer]
    assert table.column_names == ["k", "total"]
    assert Counter(zip(table["k"].to_pylist(), table["total"].to_pylist())) == duckdb_result()


def forge(tag: str, header: np.ndarray):
    """A modified compute[0]: the first message on `tag` carries `header` instead of its own."""

    def tamper(ch) -> None:
        honest = ch.send

        def send(to, t, arrays):
            if t == tag:
                arrays = [header] + list(arrays[1:])
            honest(to, t, arrays)

        ch.send = send
    return tamper


@pytest.mark.parametrize("oblivious, tag", [(False, "r.keys"), (True, "r.keys.names")], ids=["sizes", "oblivious"])
@pytest.mark.parametrize("header", [
    b"not json", b'["k#0", "k#1", "k__v"]', b'{"v": 1, "step": "r.keys", "names": ["k#0", "k__v", "secret"]}',
    b'{"v": 2, "step": "r.keys", "names": []}', b'{"v": 1, "step": "other", "names": ["k#0", "k__v"]}',
    b'{"v": 1, "step": "r.keys", "names": ["k#1", "k__v"]}',
], ids=["garbage", "bare list", "unknown column", "version", "other step", "word gap"])
def test_a_forged_key_header_is_a_protocol_error_at_the_issuer(oblivious: bool, tag: str, header: bytes) -> None:
    with pytest.raises(MessageError, match="party 'c0' sent a malformed column header"):
        run(plan("i0", oblivious), forge(tag, np.frombuffer(header, np.uint8).copy()))


def test_forged_key_columns_that_do_not_match_their_header_are_refused() -> None:
    def tamper(ch) -> None:
        honest = ch.send

        def send(to, t, arrays):
            honest(to, t, arrays[:-1] if t == "r.keys" else arrays)  # one column short

        ch.send = send

    with pytest.raises(MessageError, match="do not match their header"):
        run(plan("i0", False), tamper)
