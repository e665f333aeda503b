"""The PEP 249 compliance suite (`dbapi-compliance`'s dbapi20.py) against `fedsql.connect`.

Runs on the session's real 3-party test federation, as party p1. The suite's
DDL and INSERTs go to p1's scratch space (`scratch.dbapi20test_booze`, …):
fedsql refuses writes to the federation's shared tables, and the scratch space
is exactly where an issuer may create and fill tables of its own.

Nothing is skipped. Two tests of the suite are placeholders that every driver
must override (`test_nextset`, `test_setoutputsize`); they are overridden
below with what fedsql does. `test_callproc` runs: fedsql has no stored
procedures, so `callproc(name, args)` calls the scalar function `name`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import fedsql
from tests import dbapi20

pytestmark = pytest.mark.e2e

PREFIX = "scratch.dbapi20test_"


@pytest.fixture(scope="class")
def _federation_config(request: pytest.FixtureRequest, federation: tuple[Path, Any]) -> None:
    config, _ = federation
    request.cls.connect_kw_args = {"config": str(config), "party": "p1"}


@pytest.mark.usefixtures("_federation_config")
class TestFedsqlDBAPI20(dbapi20.DatabaseAPI20Test):
    driver = fedsql
    connect_args = ()
    connect_kw_args: dict[str, Any] = {}
    table_prefix = PREFIX
    # the suite builds these from its own class attribute; rebuild them with the scratch prefix
    ddl1 = f"create table {PREFIX}booze (name varchar(20))"
    ddl2 = f"create table {PREFIX}barflys (name varchar(20), drink varchar(30))"
    xddl1 = f"drop table {PREFIX}booze"
    xddl2 = f"drop table {PREFIX}barflys"
    lower_func = "lower"

    def setUp(self) -> None:
        self.tearDown()  # a previous failed run may have left the tables behind

    def test_nextset(self) -> None:
        """fedsql returns at most one result set per statement: nextset() is None."""
        con = self._connect()
        try:
            cur = con.cursor()
            with pytest.raises(fedsql.Error):
                cur.nextset()  # no result set yet
            self.executeDDL1(cur)
            for sql in self._populate():
                cur.execute(sql)
            cur.execute(f"select name from {PREFIX}booze")
            assert cur.nextset() is None
        finally:
            con.close()

    def test_setoutputsize(self) -> None:
        """Results arrive whole as Arrow; setoutputsize is accepted and has no effect."""
        con = self._connect()
        try:
            cur = con.cursor()
            cur.setoutputsize(10, 0)
            self.executeDDL1(cur)
            cur.execute(f"insert into {PREFIX}booze values ('a longer name than ten')")
            cur.execute(f"select name from {PREFIX}booze")
            assert cur.fetchall() == [("a longer name than ten",)]
        finally:
            con.close()
