"""The archiver's bulk write (issue 16 item 3): rows reach DuckDB as CSV text and come
back from Parquet exactly as given, whatever the strings hold (quotes, commas, line
breaks, empty, non-ASCII, NUL) and with NULL integers; a row DuckDB's CSV reader would
refuse is written through the bound-list path instead, never lost; the writer's DuckDB
session is kept across writes."""

from __future__ import annotations

import shutil
import tempfile
from datetime import date
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.domain.audit import AUDIT_SCHEMA, AuditRow
from controller.storage.archive import Archive

DAY = date(2026, 11, 25)

texts = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from(['"', ",", "\n", "\r", "\\"]),
    max_size=12,
)


def _read(archive: Archive) -> list[tuple[object, ...]]:
    names = ", ".join(name for name, _ in AUDIT_SCHEMA)
    pattern = str(archive.root / "audit" / "*" / "*.parquet")
    return archive.query(f"SELECT {names} FROM read_parquet(?) ORDER BY record_id", [pattern])


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(
        st.tuples(texts, texts, st.none() | st.integers(-(2**62), 2**62)), min_size=1, max_size=8
    )
)
def test_rows_come_back_exactly(rows: list[tuple[str, str, int | None]]) -> None:
    root = Path(tempfile.mkdtemp(prefix="cw-archive-bulk-"))
    archive = Archive(root)
    written = [
        AuditRow(
            day=DAY,
            record_id=f"login:{i:04d}",
            kind="login",
            time=1_795_579_200 + i,
            phone=phone,
            pid="p",
            mac=mac,
            ip="",
            client="nas",
            nas_id="",
            nas_ip="",
            ap="",
            venue="",
            start=start,
            stop=None,
            result="accept",
            cause="",
            archived_at=1_795_579_260_000,
        )
        for i, (phone, mac, start) in enumerate(rows)
    ]
    try:
        archive.write("audit", written)
        assert _read(archive) == [tuple(r) for r in written]
    finally:
        shutil.rmtree(root)


def test_the_writer_session_is_kept_and_parts_are_durable_files(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    row = AuditRow(
        DAY, "login:1", "login", 1, "", "", "", "", "", "", "", "", "", None, None, "", "", 1
    )
    first = archive.write("audit", [row])
    session = archive._writer
    second = archive.write("audit", [row._replace(record_id="login:2")])
    assert session is not None and archive._writer is session
    assert all(p.exists() and p.stat().st_mode & 0o777 == 0o600 for p in first + second)
    assert not list(tmp_path.glob("audit/*/.tmp-*"))  # no temporary CSV or Parquet left
    assert [r[1] for r in _read(archive)] == ["login:1", "login:2"]
