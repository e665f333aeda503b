"""COPY TO targets and sink configuration, checked without a federation (fedsql/export.py, fedsql/config.py)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot

from fedsql import errors
from fedsql.config import parse_config
from fedsql.export import export_dir, parse_target, write

BASE = """\
[federation]
name = "x"
[parties.a]
address = "127.0.0.1:7101"
{extra}
[parties.b]
address = "127.0.0.1:7102"
[parties.c]
address = "127.0.0.1:7103"
"""


def _fed(extra: str = "") -> object:
    return parse_config(BASE.format(extra=extra), Path("/cfg/federation.toml"))


def _target(sql: str, root: Path = Path("/cfg/.fedsql/a/exports")):
    return parse_target(sqlglot.parse_one(sql, read="duckdb"), root)


def test_export_directory_default_and_configured() -> None:
    assert export_dir(_fed(), "a") == Path("/cfg/.fedsql/a/exports")
    assert export_dir(_fed('export_directory = "out/a"'), "a") == Path("/cfg/out/a")
    assert export_dir(_fed('export_directory = "/srv/exports"'), "a") == Path("/srv/exports")


def test_targets() -> None:
    t = _target("COPY (SELECT 1) TO 'q/r.csv' (HEADER false, DELIMITER ';', OVERWRITE)")
    assert (t.parts, t.format, t.header, t.delimiter, t.overwrite) == (("q", "r.csv"), "csv", False, ";", True)
    assert _target("COPY (SELECT 1) TO 'r.out' (FORMAT PARQUET)").format == "parquet"
    assert _target("COPY (SELECT 1) TO '/cfg/.fedsql/a/exports/r.parquet'").parts == ("r.parquet",)
    for bad, message in [("/cfg/.fedsql/b/exports/r.parquet", "outside"), ("../b/r.parquet", "'..'"),
                         ("a//b.parquet", "empty"), ("r.parquet (x", "not a plain file name"),
                         (".hidden.parquet", "not a plain file name")]:
        with pytest.raises(errors.ProgrammingError, match=message.replace("(", "\\(")):
            _target(f"COPY (SELECT 1) TO '{bad}'")


def test_write_refuses_links_and_clobbering(tmp_path: Path) -> None:
    root, outside = tmp_path / "exports", tmp_path / "outside"
    outside.mkdir()
    table = pa.table({"a": [1, 2]})
    write(table, _target("COPY (SELECT 1) TO 'sub/r.parquet'", root), root)
    assert (root / "sub" / "r.parquet").is_file()
    with pytest.raises(errors.ProgrammingError, match="already exists"):
        write(table, _target("COPY (SELECT 1) TO 'sub/r.parquet'", root), root)
    (root / "l").symlink_to(outside, target_is_directory=True)
    with pytest.raises(errors.ProgrammingError, match="symbolic link"):
        write(table, _target("COPY (SELECT 1) TO 'l/r.parquet' (OVERWRITE)", root), root)
    assert list(outside.iterdir()) == [] and not list(root.rglob(".*.tmp"))


def test_sink_configuration() -> None:
    sink = '[parties.a.sinks.out]\nsource = "postgresql://w@127.0.0.1:5432/bank"\ntable = "public.out"\n'
    fed = _fed(sink)
    assert fed.parties["a"].sinks["out"].relation == "public.out"
    for extra, message in [
        (sink.replace("w@", "w:pw@"), "carries a password"),
        ('[parties.a.sinks.out]\nsource = "sc://127.0.0.1:15002"\ntable = "db.t"\n', "spark sources cannot be sinks"),
        (sink + 'mode = "append"\n', "unknown key 'mode'"),
        (sink.replace('table = "public.out"\n', ""), 'missing "table"'),
    ]:
        with pytest.raises(errors.ConfigError, match=message):
            _fed(extra)


def test_flight_sql_urls() -> None:
    from connectors.sources.url import SourceURLError, parse_source_url

    url = parse_source_url("grpc+tls://alice@h:7301?tls_root_certificate=/etc/r.crt&tls_server_name=p1.fedsql")
    assert (url.kind, url.user, url.host, url.port, url.path) == ("flightsql", "alice", "h", 7301, "/etc/r.crt")
    for bad, message in [("grpc://h:1", "TLS only"), ("grpc+tls://a:pw@h:1", "carries a password"),
                         ("grpc+tls://h:1?token=x", "unknown parameter token"),
                         ("grpc+tls://h:1?tls_root_certificate=r.crt", "absolute path"),
                         ("grpc+tls://h", "expected grpc\\+tls://")]:
        with pytest.raises(SourceURLError, match=message):
            parse_source_url(bad)
