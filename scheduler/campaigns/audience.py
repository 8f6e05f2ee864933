"""Campaign audiences from CSV: phone plus any columns, normalised to WhatsApp IDs, streamed into the database.

The file is read row by row and inserted in batches; duplicates are dropped by the database's unique
(campaign_id, wa_id) key rather than an in-memory set, and only the first ``MAX_REPORTED`` bad rows are kept
for the report (the rest are counted), so memory stays constant however long the file is. Reading the file
as text within its size limits is `audience_text`'s job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduler.campaigns.audience_store import insert_members
from scheduler.campaigns.audience_text import (
    AudienceError,
    read_header,
    records,
)
from scheduler.campaigns.estimate import UNKNOWN_REGION, region_of_prefix
from scheduler.campaigns.phone_validity import valid_region
from storage.models import AudienceMember

PHONE_COLUMNS = (
    "phone",
    "phone_number",
    "phonenumber",
    "mobile",
    "mobile_number",
    "whatsapp",
    "whatsapp_number",
    "wa_id",
    "number",
    "msisdn",
    "contact",
    "tel",
    "telephone",
)
MAX_REPORTED = 1000
BATCH = 5000  # rows per transaction: large enough that per-commit costs stop mattering
MAX_FIELD = 1024  # a template parameter longer than this is a broken file, not a name
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?[eE]\+?\d+$")
_E164 = re.compile(r"\+([1-9]\d{6,14})")
_NATIONAL = re.compile(r"[1-9]\d{5,13}")
_DIGITS = re.compile(r"\d{6,17}")
_SEPARATORS = str.maketrans("", "", " -.()")


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


@dataclass(frozen=True)
class Row:
    line: int
    wa_id: str
    fields: dict[str, str]
    region: str = UNKNOWN_REGION


@dataclass
class ImportReport:
    """What an import did: rows read, recipients kept, duplicates dropped, bad rows (line, reason)."""

    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    bad_count: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    phone_column: str = ""
    regions: dict[str, int] = field(default_factory=dict)

    def add_bad(self, bad: BadRow) -> None:
        self.bad_count += 1
        if len(self.bad_rows) < MAX_REPORTED:
            self.bad_rows.append(bad)

    def summary(self) -> str:
        return (
            f"{self.imported} recipients imported from {self.rows} rows"
            f" ({self.duplicates} duplicates, {self.bad_count} bad rows)"
        )


def _norm_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def find_phone_column(header: Sequence[str]) -> int:
    """Index of the phone column: the first whose name is a known phone heading."""
    normalised = [_norm_header(h) for h in header]
    for wanted in PHONE_COLUMNS:
        if wanted in normalised:
            return normalised.index(wanted)
    raise AudienceError(
        f"no phone column: name one column {', '.join(PHONE_COLUMNS[:4])} or similar"
        f" (found: {', '.join(h for h in header if h) or 'nothing'})"
    )


def normalise_phone(raw: str, region: str) -> str:
    """E.164 digits without '+' (a WhatsApp ID); ValueError with the reason when it is not a valid number."""
    return _normalise(raw, region)[0]


def _fast(text: str, region: str) -> tuple[str, str] | None:
    """(wa_id, region) without the costly parse for the common spellings: E.164 and the default region's
    national numbers, spaces, dashes, dots and brackets allowed; None when the full parser must decide."""
    compact = text.translate(_SEPARATORS)
    if compact.startswith("+"):
        return _fast_e164(compact)
    return _fast_national(compact, region)


def _fast_national(digits: str, region: str) -> tuple[str, str] | None:
    """A number of ``region`` written nationally (with or without its trunk prefix) or with the region's
    country code but no '+', decided as `phonenumbers.parse` would, without it."""
    if _DIGITS.fullmatch(digits) is None:
        return None
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper())
    if meta is None or meta.country_code is None:
        return None
    prefix = meta.national_prefix or ""
    # Regions whose trunk prefix is a pattern (Argentina, Brazil…) or rewrites the number need the parser,
    # and so does anything that starts like an international call prefix.
    if (meta.national_prefix_for_parsing not in (None, prefix) or meta.national_prefix_transform_rule
            or (meta.international_prefix and re.match(meta.international_prefix, digits))):
        return None
    code = str(meta.country_code)
    if digits.startswith(code):
        # The parser takes the country code off when the whole would not be a national number, or is too
        # long to be one; otherwise it is read as a national number, and the parser decides.
        rest = digits[len(code):]
        if prefix and rest.startswith(prefix):
            return None
        general = meta.general_desc
        if general is None or not general.national_number_pattern:
            return None
        lengths = general.possible_length
        too_long = bool(lengths) and len(digits) > max(lengths)
        if not too_long and _compiled(general.national_number_pattern).fullmatch(digits) is not None:
            return None
        return _valid(meta, rest)
    if prefix and digits.startswith(prefix):
        # A trunk prefix is taken off unless only the whole matches the region's pattern: a valid rest
        # always matches it, so a valid rest is what the parser reads too.
        return _valid(meta, digits[len(prefix):])
    return _valid(meta, digits)


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _valid(meta: Any, national: str) -> tuple[str, str] | None:
    """(wa_id, region) when national (no leading zero) is a valid number of meta's country; else None."""
    if _NATIONAL.fullmatch(national) is None:
        return None
    found = valid_region(meta.country_code, national)
    return None if found is None else (f"{meta.country_code}{national}", found or UNKNOWN_REGION)


def _fast_e164(text: str) -> tuple[str, str] | None:
    """(wa_id, region) of a valid number written in plain E.164 ('+' and digits), skipping the costly
    parse; None when the text needs the full parser (other formats, a leading national zero, invalid)."""
    found = _E164.fullmatch(text)
    if found is None:
        return None
    digits = found.group(1)
    for k in (1, 2, 3):  # country codes are prefix-free: the first known prefix is the code
        code = int(digits[:k])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[k:]
            if not national or national[0] == "0":
                return None  # Italian-style leading zeros: the parser knows how to keep them
            region = valid_region(code, national)
            if region is None:
                return None  # the parser gives the reason
            return digits, region or UNKNOWN_REGION
    return None


def _normalise(raw: str, region: str) -> tuple[str, str]:
    text = raw.strip()
    return _fast(text, region) or _parse(text, region)


def _parse(text: str, region: str) -> tuple[str, str]:
    if not text:
        raise ValueError("empty phone number")
    if _SCIENTIFIC.match(text):
        raise ValueError(f"{text!r} looks like a spreadsheet number in scientific notation; format the column as text")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{text!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(
            f"{text!r} is not a valid phone number for region {region}"
            if not text.startswith("+")
            else f"{text!r} is not a valid phone number"
        )
    wa_id = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
    return wa_id, phonenumbers.region_code_for_number(number) or UNKNOWN_REGION


def parse_rows(
    stream: IO[str], region: str, required: Iterable[str] = (), *, report: ImportReport | None = None,
    source: str = "the file",
) -> Iterator[Row | BadRow]:
    """Rows of a CSV stream as Row (with wa_id) or BadRow; AudienceError for a file-wide problem.

    `required` are columns a template variable is mapped to: they must exist, and an empty cell in one of
    them makes a bad row (Meta rejects an empty parameter). `source` names the file in errors.
    """
    header, reader = read_header(stream, source)
    phone_idx = find_phone_column(header)
    by_norm = {_norm_header(h): h for h in header if h}
    missing = [c for c in required if c not in header and _norm_header(c) not in by_norm]
    if missing:
        raise AudienceError(
            f"column(s) not in the file: {', '.join(missing)} (columns: {', '.join(h for h in header if h)})"
        )
    needed = [c if c in header else by_norm[_norm_header(c)] for c in required]
    if report is not None:
        report.columns = [h for h in header if h]
        report.phone_column = header[phone_idx]
    for cells in records(reader, source):
        line = reader.line_num
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) <= phone_idx:
            yield BadRow(line, f"only {len(cells)} columns; the phone column is column {phone_idx + 1}")
            continue
        try:
            wa_id, country = _normalise(cells[phone_idx], region)
        except ValueError as exc:
            yield BadRow(line, str(exc))
            continue
        fields = {h: cells[i].strip() for i, h in enumerate(header) if h and i < len(cells) and i != phone_idx}
        empty = [c for c in needed if not fields.get(c)]
        if empty:
            yield BadRow(line, f"empty value in column {', '.join(empty)}")
            continue
        long = [h for h, v in fields.items() if len(v) > MAX_FIELD]
        if long:
            yield BadRow(line, f"value in column {long[0]} is longer than {MAX_FIELD} characters")
            continue
        yield Row(line, wa_id, fields, country)


async def _insert_batch(session: AsyncSession, campaign_id: int, batch: list[Row]) -> None:
    await insert_members(session, campaign_id, [(r.wa_id, r.fields) for r in batch])


async def import_audience(
    sessions: async_sessionmaker[AsyncSession],
    campaign_id: int,
    stream: IO[str],
    region: str,
    required: Iterable[str] = (),
    *,
    batch_size: int = BATCH,
    source: str = "the file",
) -> ImportReport:
    """Stream a CSV into campaign_id's audience, committing every batch; returns the report. `source` names the
    file in errors."""
    report = ImportReport()
    batch: list[Row] = []
    valid = 0

    async def flush() -> None:
        async with sessions() as session, session.begin():
            await _insert_batch(session, campaign_id, batch)
        batch.clear()

    for item in parse_rows(stream, region, required, report=report, source=source):
        report.rows += 1
        if isinstance(item, BadRow):
            report.add_bad(item)
            continue
        valid += 1
        report.regions[item.region] = report.regions.get(item.region, 0) + 1
        batch.append(item)
        if len(batch) >= batch_size:
            await flush()
    if batch:
        await flush()
    async with sessions() as session:
        report.imported = int(
            await session.scalar(
                select(func.count()).select_from(AudienceMember).where(AudienceMember.campaign_id == campaign_id)
            )
            or 0
        )
    report.duplicates = valid - report.imported
    if report.duplicates:
        # Region counts were taken before deduplication; recount from the stored audience.
        report.regions = await audience_regions(sessions, campaign_id)
    return report


async def audience_regions(sessions: async_sessionmaker[AsyncSession], campaign_id: int) -> dict[str, int]:
    """Recipients per region in a stored audience (grouped by the first digits, so cheap for any size)."""
    prefix = func.substr(AudienceMember.wa_id, 1, 4)
    async with sessions() as session:
        rows = (
            await session.execute(
                select(prefix, func.count()).where(AudienceMember.campaign_id == campaign_id).group_by(prefix)
            )
        ).all()
    out: dict[str, int] = {}
    for p, n in rows:
        r = region_of_prefix(str(p))
        out[r] = out.get(r, 0) + int(n)
    return out


def mapped_columns(variables: Mapping[str, Any]) -> list[str]:
    """CSV columns a campaign's variable mapping reads."""
    return [str(v["column"]) for v in variables.values() if isinstance(v, dict) and v.get("column")]
