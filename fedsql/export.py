"""`COPY (query) TO 'file'`: the issuer writes its own result into its own export directory.

The query runs as any other (fedsql/scratch.py routes it: a federated SELECT with its policies
and leakage report, or a statement over the scratch space); only its result, which belongs to
the issuer, is written, and only below the issuer's export directory
(`[parties.NAME] export_directory`, default `<config dir>/.fedsql/NAME/exports/`).

The file name comes from a user, so it is treated as hostile (issue #14): an absolute path
outside the directory, a `..` component, a symbolic link anywhere below the directory (to a
file or a directory), or a name that is not a plain file name are refused. The check is not a
string test followed by a write that could follow a link planted in between: the directory is
walked with `O_NOFOLLOW` file descriptors (`openat`), the file is written as a new temporary
file in the final directory and then linked into place (no clobber) or renamed over the old
one (`OVERWRITE`), which replaces a name, never writes through a link.
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from fedsql import errors

log = logging.getLogger("fedsql.node")

EXPORTS = "exports"
FORMATS = {"parquet": ".parquet", "csv": ".csv"}
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.=-]{0,127}$")  # one path component (hive-style k=v allowed)
OPTIONS = ("FORMAT", "HEADER", "DELIMITER", "OVERWRITE", "OVERWRITE_OR_IGNORE")


def export_dir(fed: Any, party: str) -> Path:
    """The party's export directory: its `export_directory` (relative to the configuration
    file) or `<config dir>/.fedsql/<party>/exports`."""
    from fedsql.state import state_dir

    configured = getattr(fed.parties[party], "export_directory", None) if party in fed.parties else None
    if configured:
        path = Path(configured).expanduser()
        if not path.is_absolute():
            path = Path(fed.path).expanduser().resolve().parent / path
        return path
    return state_dir(fed.path, party) / EXPORTS


@dataclass(frozen=True)
class CopyTarget:
    """Where and how COPY TO writes: parts below the export directory, format and options."""

    parts: tuple[str, ...]
    format: str
    overwrite: bool
    header: bool = True
    delimiter: str = ","

    @property
    def shown(self) -> str:
        return "/".join(self.parts)


def _refuse(what: str) -> errors.Error:
    return errors.ProgrammingError(f"COPY … TO: {what}")


def parse_target(ast: Any, root: Path) -> CopyTarget:
    """The target of a parsed `COPY … TO 'file' (options)`, checked as a name below `root`.

    Refuses (ProgrammingError, saying what to write instead): COPY FROM, more than one file,
    absolute paths outside `root`, `..` or empty components, unknown formats and options."""
    from sqlglot import exp

    if ast.args.get("kind"):  # COPY … FROM
        raise errors.UnsupportedSql("COPY … FROM is not supported: fedsql reads only the tables in the federation "
                                    "file; to write a result use COPY (SELECT …) TO 'name.parquet'")
    files = ast.args.get("files") or []
    if len(files) != 1 or not isinstance(files[0], exp.Literal) or not files[0].is_string:
        raise _refuse("name one file as a string, e.g. COPY (SELECT …) TO 'result.parquet'")
    credentials = ast.args.get("credentials")
    if credentials is not None and any(v is not None and v != [] for v in credentials.args.values()):
        raise _refuse("credentials are not accepted; the file is written in your export directory")
    options: dict[str, str | None] = {}
    for param in ast.args.get("params") or []:
        name = (param.this.name if isinstance(param.this, exp.Expression) else str(param.this)).upper()
        value = param.args.get("expression")
        if isinstance(value, exp.Boolean):
            value = "true" if value.this else "false"
        elif isinstance(value, exp.Expression):
            value = value.name
        if name not in OPTIONS:
            raise _refuse(f"option {name} is not supported; supported: {', '.join(OPTIONS)}")
        options[name] = None if value is None else str(value)
    parts = _parts(files[0].this, root)
    suffix = Path(parts[-1]).suffix.lower()
    fmt = (options.get("FORMAT") or "").lower() or {v: k for k, v in FORMATS.items()}.get(suffix, "")
    if fmt not in FORMATS:
        raise _refuse(f"cannot tell the format of {parts[-1]!r}: end the name in .parquet or .csv, "
                      "or add (FORMAT PARQUET) / (FORMAT CSV)")
    delimiter = options.get("DELIMITER") or ","
    if len(delimiter) != 1 or delimiter in "\r\n\"":
        raise _refuse(f"DELIMITER must be one character (not a quote or line break), got {delimiter!r}")
    return CopyTarget(parts, fmt, "OVERWRITE" in options or "OVERWRITE_OR_IGNORE" in options,
                      header=_flag(options.get("HEADER", "true")), delimiter=delimiter)


def _flag(value: str | None) -> bool:
    text = (value or "true").lower()
    if text not in ("true", "false", "1", "0", "on", "off"):
        raise _refuse(f"HEADER takes true or false, got {value!r}")
    return text in ("true", "1", "on")


def _parts(name: str, root: Path) -> tuple[str, ...]:
    """`name` as components below `root`; anything that could leave it is refused by name."""
    hint = f"write a name inside your export directory ({root}), e.g. 'result.parquet' or 'q1/result.csv'"
    if "\x00" in name or "\\" in name:
        raise _refuse(f"{name!r} contains a NUL or backslash; {hint}")
    if os.path.isabs(name) or name.startswith("~"):
        absolute = os.path.normpath(os.path.expanduser(name))
        base = str(root.resolve())
        if absolute != name.rstrip("/") or not absolute.startswith(base + os.sep):
            raise _refuse(f"{name!r} is outside your export directory; {hint}")
        name = absolute[len(base) + 1:]
    parts = tuple(name.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise _refuse(f"{name!r} has an empty, '.' or '..' component; {hint}")
        if not _PART.match(part):
            raise _refuse(f"{part!r} in {name!r} is not a plain file name (letters, digits, '_', '.', '=', '-'; "
                          f"at most 128); {hint}")
    return parts


def _encode(table: pa.Table, target: CopyTarget) -> bytes:
    buffer = io.BytesIO()
    if target.format == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, buffer)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, buffer, pcsv.WriteOptions(include_header=target.header, delimiter=target.delimiter))
    return buffer.getvalue()


def write(table: pa.Table, target: CopyTarget, root: Path) -> None:
    """Write `table` as `target` below `root`, never through a symbolic link and never over an
    existing file unless `target.overwrite`."""
    payload = _encode(table, target)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(root.resolve(), flags)  # the directory itself is the operator's choice (may be a link)
    try:
        for i, part in enumerate(target.parts[:-1]):
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError:
                raise _refuse(f"{'/'.join(target.parts[:i + 1])!r} is a symbolic link or not a directory in your "
                              "export directory; fedsql writes only into real directories there") from None
            os.close(fd)
            fd = child
        name = target.parts[-1]
        try:
            existing = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            import stat

            if stat.S_ISLNK(existing.st_mode):
                raise _refuse(f"{target.shown!r} is a symbolic link; fedsql does not write through links "
                              "(remove it, or choose another name)")
            if not stat.S_ISREG(existing.st_mode):
                raise _refuse(f"{target.shown!r} exists and is not a file")
            if not target.overwrite:
                raise _refuse(f"{target.shown!r} already exists; add (OVERWRITE) to replace it, "
                              "or choose another name")
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600, dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            if target.overwrite:
                os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces the name, never follows it
            else:
                try:
                    os.link(tmp, name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
                except FileExistsError:
                    raise _refuse(f"{target.shown!r} already exists; add (OVERWRITE) to replace it") from None
                os.unlink(tmp, dir_fd=fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=fd)
            except FileNotFoundError:
                pass
            raise
    finally:
        os.close(fd)
