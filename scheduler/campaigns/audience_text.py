"""An audience file read as CSV text within its limits, the same whatever path it came in by (the CLI, Slack).

The file's size (``MAX_FILE_BYTES``) and each line's (``MAX_LINE_CHARS``) are checked while reading: a line is
read at most a few characters past its limit, never whole, and what csv cannot read is an `AudienceError`
naming the file and the line, not a traceback.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MAX_FILE_BYTES = 50 * 1024 * 1024  # about 1.5 million recipients: larger is split into several campaigns
MAX_LINE_CHARS = 128 * 1024  # a row, even of many long columns, is far shorter: longer is not a row

__all__ = ["MAX_FILE_BYTES", "MAX_LINE_CHARS", "AudienceError", "file_too_large", "open_text", "read_header",
           "records"]


class AudienceError(ValueError):
    """The file as a whole cannot be used (no header, no phone column, a mapped column missing, too large)."""


def file_too_large(source: str, limit: int | None = None) -> str:
    """The one-line refusal of a file past MAX_FILE_BYTES, naming the file and the limit."""
    most = _size(MAX_FILE_BYTES if limit is None else limit)
    return f"the file {source} is larger than {most}, the most an audience file may be; split it into several campaigns"


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB" if n >= 1024 * 1024 else f"{n / 1024:g} KB" if n >= 1024 else f"{n} bytes"


def _sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def open_text(path: str | Path) -> IO[str]:
    """Open a CSV file as text, tolerating Excel's byte-order mark and stray bytes."""
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def read_header(stream: IO[str], source: str = "the file") -> tuple[list[str], Any]:
    """Read the header row from the start of a stream; returns (columns, csv reader for the rest).

    AudienceError, naming `source` and the limit, for a file past MAX_FILE_BYTES or a line past MAX_LINE_CHARS
    (found while reading, with at most the limit of that line held)."""
    _check_size(stream, source)
    lines = _Lines(stream, source)
    sample = stream.read(min(16384, lines.line_limit + 1))
    lines.count(len(sample))
    dialect = _sniff_dialect(sample)
    reader = csv.reader(_chained(sample, lines), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise AudienceError("the file is empty") from None
    except csv.Error as exc:
        raise AudienceError(f"line {reader.line_num} of {source}: {exc}") from None
    header = [h.strip().lstrip("\ufeff").strip() for h in header]
    if not any(header):
        raise AudienceError("the first row must name the columns (e.g. phone,name)")
    return header, reader


def _check_size(stream: IO[str], source: str) -> None:
    """Refuse a file past MAX_FILE_BYTES before reading it, when the stream is a file."""
    try:
        size = os.fstat(stream.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return  # not a file: _Lines counts what is read instead
    if size > MAX_FILE_BYTES:
        raise AudienceError(file_too_large(source))


class _Lines:
    """A stream's lines, each read with readline(limit + 1): a line past MAX_LINE_CHARS is refused having held
    only that much of it, and the whole read is counted against MAX_FILE_BYTES (characters, at most its bytes)."""

    def __init__(self, stream: IO[str], source: str) -> None:
        self.stream, self.source = stream, source
        self.line_limit, self.file_limit = MAX_LINE_CHARS, MAX_FILE_BYTES
        self.read = 0
        self.lines = 0

    def count(self, n: int) -> None:
        self.read += n
        if self.read > self.file_limit:
            raise AudienceError(file_too_large(self.source, self.file_limit))

    def check(self, line: str) -> str:
        """One physical line of the file (the sample's included), checked against the line limit."""
        self.lines += 1
        if len(line.rstrip("\r\n")) > self.line_limit:
            raise AudienceError(f"line {self.lines} of {self.source} is longer than {self.line_limit:,} characters, "
                                "the most one row of an audience file may have (is it a CSV file?)")
        return line

    def __iter__(self) -> Iterator[str]:
        while line := self.stream.readline(self.line_limit + 2):  # + the line break (two for \r\n)
            self.count(len(line))
            yield line


def _chained(head: str, rest: _Lines) -> Iterator[str]:
    """Lines of an already-read sample followed by the rest of the stream (the sample may end mid-line)."""
    pending = ""
    for line in io.StringIO(head, newline=""):
        if line.endswith(("\n", "\r")):
            yield rest.check(pending + line)
            pending = ""
        else:
            pending += line
    for line in rest:
        yield rest.check(pending + line)
        pending = ""
    if pending:
        yield rest.check(pending)


def records(reader: Any, source: str) -> Iterator[list[str]]:
    """The csv reader's records; a file csv cannot read (a quote never closed, a field past csv's own limit)
    is an AudienceError naming the line, not a traceback."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise AudienceError(f"line {reader.line_num} of {source}: {exc}") from None
