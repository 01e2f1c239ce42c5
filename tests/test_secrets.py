"""Secrets at rest and in logs: the key file and the embedded database are private from the
first byte, and the access log does not keep the tokens that stand for a person's delivery."""

from __future__ import annotations

import logging
import stat

from mailcast.app import RedactTokens
from mailcast.config import Settings
from mailcast.db.engine import create_engine


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_key_and_the_database_are_private(tmp_path):
    settings = Settings(data_dir=tmp_path / "var")
    key = settings.secret()
    assert len(key) >= 32 and settings.secret() == key
    assert _mode(tmp_path / "var") == 0o700 and _mode(tmp_path / "var" / "secret_key") == 0o600
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'mailcast.db'}")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (x)")
    await engine.dispose()
    assert _mode(tmp_path / "data") == 0o700 and _mode(tmp_path / "data" / "mailcast.db") == 0o600


def test_the_access_log_keeps_no_token():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/t/c/AbC-12_x?utm=1", "1.1", 302),
        None,
    )
    assert RedactTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "GET /t/c/...?utm=1 HTTP/1.1" 302'
    for path, shown in (
        ("/t/o/XYZ.gif", "/t/o/..."),
        ("/u/Tok3n", "/u/..."),
        ("/v1/campaigns", "/v1/campaigns"),
    ):
        record.args = ("c", "GET", path, "1.1", 200)
        RedactTokens().filter(record)
        assert record.args[2] == shown
