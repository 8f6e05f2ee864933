"""Audience CSV import: normalised WhatsApp IDs, bad rows reported by line, duplicates dropped, streamed."""

from __future__ import annotations

import asyncio
import io
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import select

from scheduler.campaigns import audience_text as audience
from scheduler.campaigns.audience import (
    BadRow,
    Row,
    import_audience,
    normalise_phone,
    parse_rows,
)
from scheduler.campaigns.audience_text import AudienceError, open_text
from storage.db import make_engine, make_sessionmaker, migrate
from storage.models import AudienceMember, Campaign, Channel


@pytest.mark.parametrize(("raw", "region", "wa_id"), [
    ("+91 98123 45678", "IN", "919812345678"),
    ("098123-45678", "IN", "919812345678"),
    ("9812345678", "IN", "919812345678"),
    ("0091 9812345678", "IN", "919812345678"),
    ("(212) 555-0123", "US", "12125550123"),
    ("+44 7911 123456", "IN", "447911123456"),
])
def test_numbers_are_normalised_to_e164_digits(raw: str, region: str, wa_id: str) -> None:
    assert normalise_phone(raw, region) == wa_id


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "empty"),
    ("12345", "not a valid phone number"),
    ("9.19812E+11", "scientific notation"),
    ("call me", "not a phone number"),
])
def test_bad_numbers_say_why(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalise_phone(raw, "IN")


def test_rows_report_bad_lines_with_their_line_number() -> None:
    text = ("\ufeffName;Mobile;Batch\n"
            "Ravi;098123 45678;A\n"
            "Bad;12345;B\n"
            "\n"
            'Quoted;"+91 98123 00001";"multi\nline"\n'
            "NoBatch;9812300002;\n")
    items = list(parse_rows(io.StringIO(text), "IN", ["batch"]))
    rows = [i for i in items if isinstance(i, Row)]
    bad = [i for i in items if isinstance(i, BadRow)]
    assert [r.wa_id for r in rows] == ["919812345678", "919812300001"]
    assert rows[0].fields == {"Name": "Ravi", "Batch": "A"}
    assert rows[1].fields["Batch"] == "multi\nline"
    assert [(b.line, b.reason.split(" ")[0]) for b in bad] == [(3, "'12345'"), (7, "empty")]


def test_file_without_phone_column_or_mapped_column_is_refused() -> None:
    with pytest.raises(AudienceError, match="no phone column"):
        list(parse_rows(io.StringIO("name,city\nRavi,Lucknow\n"), "IN"))
    with pytest.raises(AudienceError, match="not in the file: batch"):
        list(parse_rows(io.StringIO("phone,name\n9812345678,Ravi\n"), "IN", ["batch"]))
    with pytest.raises(AudienceError, match="empty"):
        list(parse_rows(io.StringIO(""), "IN"))


async def _campaign(url: str) -> tuple[object, int]:
    await migrate(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    async with sessions() as s, s.begin():
        ch = Channel(name="lucknow", phone_number_id="1", waba_id="2", mode="coexistence", mps=5)
        s.add(ch)
        await s.flush()
        c = Campaign(name="t", channel_id=ch.id, template_name="t", language="en", schedule_kind="now",
                     status="draft")
        s.add(c)
        await s.flush()
        return engine, c.id


async def test_import_dedupes_in_the_database_and_reports(db_url: str, tmp_path: Path) -> None:
    engine, cid = await _campaign(db_url)
    sessions = make_sessionmaker(engine)  # type: ignore[arg-type]
    csv_text = "phone,name\n" + "".join(f"98123{i % 40:05d},N{i}\n" for i in range(100)) + "x,bad\n"
    report = await import_audience(sessions, cid, io.StringIO(csv_text), "IN", ["name"], batch_size=7)
    assert (report.rows, report.imported, report.duplicates, report.bad_count) == (101, 40, 60, 1)
    assert report.bad_rows[0].line == 102
    assert report.regions == {"IN": 40}
    async with sessions() as s:
        ids = (await s.scalars(select(AudienceMember.wa_id).where(AudienceMember.campaign_id == cid))).all()
    assert sorted(ids) == [f"9198123{i:05d}" for i in range(40)]
    await engine.dispose()  # type: ignore[attr-defined]


async def test_import_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    engine, cid = await _campaign(url)
    sessions = make_sessionmaker(engine)  # type: ignore[arg-type]

    def write(path: Path, n: int) -> Path:
        with path.open("w") as f:
            f.write("phone,name,batch\n")
            for i in range(n):
                f.write(f"+9198{i:08d},Student number {i},Batch {i % 7}\n" if i % 50 else f"bad{i},x,y\n")
        return path

    async def peak(n: int, campaign_id: int) -> int:
        path = write(tmp_path / f"a{n}.csv", n)
        tracemalloc.start()
        try:
            with open_text(path) as stream:
                report = await import_audience(sessions, campaign_id, stream, "IN", batch_size=500)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert report.imported == n - n // 50
            assert len(report.bad_rows) == min(n // 50, 1000) and report.bad_count == n // 50

    small = await peak(500, cid)
    async with sessions() as s, s.begin():
        c2 = Campaign(name="t2", channel_id=1, template_name="t", language="en", schedule_kind="now",
                      status="draft")
        s.add(c2)
        await s.flush()
        cid2 = c2.id
    large = await peak(5_000, cid2)
    # Ten times the rows; holding them would take ten times the memory. Streaming stays in the same range.
    assert large < small + 500_000, (small, large)
    await engine.dispose()  # type: ignore[attr-defined]


# ---- limits, the same on every path ---------------------------------------------------------------------

LINE_LIMIT = 64 * 1024


def _file_with_a_long_line(path: Path, long_mb: int, *, quoted: bool = False) -> Path:
    """Two good rows, one line of `long_mb` MB (written in 1 MB pieces, never held whole), one good row."""
    piece = "y" * (1024 * 1024)
    with path.open("w") as f:
        f.write("phone,name\n9812345678,Ravi\n9812345679,Sita\n9812345680,")
        f.write('"' if quoted else "")
        for _ in range(long_mb):
            f.write(piece if not quoted else piece[:-1] + "\n")
        f.write("\n9812345681,Asha\n")
    return path


def test_a_line_past_the_limit_is_refused_naming_the_file_and_the_limit_in_bounded_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "MAX_LINE_CHARS", LINE_LIMIT)
    path = _file_with_a_long_line(tmp_path / "students.csv", 8)
    tracemalloc.start()
    try:
        with open_text(path) as stream, pytest.raises(AudienceError) as refused:
            list(parse_rows(stream, "IN", source="students.csv"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(refused.value) == ("line 4 of students.csv is longer than 65,536 characters, the most one row of "
                                  "an audience file may have (is it a CSV file?)")
    # The 8 MB line was never held: a few times the limit at most.
    assert peak < 8 * LINE_LIMIT, peak


def test_a_quoted_field_running_over_many_lines_is_refused_not_a_csv_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "MAX_LINE_CHARS", 2 * 1024 * 1024)
    path = _file_with_a_long_line(tmp_path / "quoted.csv", 3, quoted=True)
    tracemalloc.start()
    try:
        with open_text(path) as stream, pytest.raises(AudienceError) as refused:
            list(parse_rows(stream, "IN", source="quoted.csv"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(refused.value).startswith("line ") and " of quoted.csv: field larger than field limit" in str(
        refused.value)
    assert peak < 6 * 1024 * 1024, peak


def test_a_file_past_the_limit_is_refused_by_its_size_or_while_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audience, "MAX_FILE_BYTES", 1024 * 1024)
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.write("phone,name\n")
        for i in range(120_000):  # about 3 MB of good rows
            f.write(f"98{i:08d},Student {i}\n")
    expected = "the file big.csv is larger than 1 MB, the most an audience file may be; split it into several campaigns"
    with open_text(path) as stream, pytest.raises(AudienceError, match="^" + expected):
        list(parse_rows(stream, "IN", source="big.csv"))
    with pytest.raises(AudienceError, match="^" + expected):  # a stream that is not a file: counted as read
        list(parse_rows(io.StringIO(path.read_text()), "IN", source="big.csv"))


async def test_the_cli_says_which_limit_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli.entry import main
    from tests.test_campaign_scheduler import _write_config

    monkeypatch.setattr(audience, "MAX_LINE_CHARS", LINE_LIMIT)
    config = str(_write_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"))
    path = str(_file_with_a_long_line(tmp_path / "students.csv", 8))
    code = await asyncio.to_thread(main, ["--config", config, "campaign", "create", "--channel", "lucknow",
                                          "--template", "fees", "--language", "en", "--audience", path])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1] == (f"error: audience: line 4 of {path} is longer than 65,536 characters, the most one row of "
                       "an audience file may have (is it a CSV file?)")
    assert not any("Traceback" in line or "_csv.Error" in line for line in err)
