"""Start a federation of real node processes from a TOML template and tables, for e2e test modules.

    CONFIG = '... address = "127.0.0.1:{p0}" ... source = "a_cust.parquet" ...'
    with running_federation(directory, CONFIG, {"a.cust": table, ...}) as config:
        conn = fedsql.connect(str(config), party="a")

Each `{pN}` placeholder gets a free port; table "party.name" is written as `party_name.parquet`
(the file names the template's `source` keys use). One place for what every e2e module did alike.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq


def parquet_name(table: str) -> str:
    return table.replace(".", "_") + ".parquet"


@contextlib.contextmanager
def running_federation(directory: Path, template: str, tables: dict[str, pa.Table], *,
                       file_name: Callable[[str], str] = parquet_name, timeout: float = 90) -> Iterator[Path]:
    """Write the tables and the config (free ports filled in), run the nodes; yield the config's path."""
    from fedsql.launcher import free_ports, start_federation

    for name, table in tables.items():
        pq.write_table(table, directory / file_name(name))
    count = 1 + max(int(n) for n in re.findall(r"\{p(\d+)\}", template))
    ports = free_ports(count)
    config = directory / "federation.toml"
    config.write_text(template.format(**{f"p{i}": port for i, port in enumerate(ports)}), encoding="utf-8")
    with start_federation(config, log_dir=directory / "logs", timeout=timeout):
        yield config
