"""mysqlclient's date decoders give exactly PyMySQL's values: a date/datetime for every text
Python can hold, the text itself (a bad row later) for every other."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql import converters as pc

from poller.source.mysql_values import date_value, datetime_value

EDGES = [
    "2020-01-01 10:00:00", "2020-01-01 10:00:00.5", "2020-01-01 10:00:00.123",
    "2020-01-01 10:00:00.000001", "9999-12-31 23:59:59.999999", "0001-01-01 00:00:00",
    "0000-00-00 00:00:00", "0000-00-00 00:00:00.000000",
    "2024-00-15 00:00:00", "2023-02-29 10:00:00", "2020-01-01 24:00:00", "2020-01-01T10:00:00",
    "2020-01-01 10:00:00+01:00", "2020-01-01 10:00:00.12345Z", "2020-01-01 10:00:00.1234567",
    "2020-1-1 1:2:3", "", "garbage", "2020-01-01",
]  # fmt: skip
DATES = ["2020-01-01", "0000-00-00", "2024-00-15", "2023-02-29", "0001-01-01", "9999-12-31",
         "2020-1-1", "20200101", "2020-01-01 10:00:00", "", "2020-W01-1", "+020-01-01"]  # fmt: skip


def _run(fn: Callable[[str], object], text: str) -> object:
    try:
        return fn(text)
    except Exception as exc:  # PyMySQL raises on some texts (no month): so must we, alike
        return type(exc)


def _same(ours: Callable[[str], object], theirs: Callable[[str], object], text: str) -> None:
    got, want = _run(ours, text), _run(theirs, text)
    assert type(got) is type(want) and got == want, (text, got, want)


@pytest.mark.parametrize("text", EDGES)
def test_datetime_texts_decode_as_pymysql_does(text: str) -> None:
    _same(datetime_value, pc.convert_datetime, text)


@pytest.mark.parametrize("text", DATES)
def test_date_texts_decode_as_pymysql_does(text: str) -> None:
    _same(date_value, pc.convert_date, text)


_DIGITS = st.text("0123456789", min_size=1, max_size=4)


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1, 1, 1)),
    st.integers(0, 6),
    st.sampled_from(["", "Z", "+01:00", "x"]),
)
def test_generated_datetimes_decode_as_pymysql_does(v: dt.datetime, fsp: int, tail: str) -> None:
    text = v.strftime("%Y-%m-%d %H:%M:%S") + (f".{v.microsecond:06d}"[: fsp + 1] if fsp else "")
    _same(datetime_value, pc.convert_datetime, text)
    _same(datetime_value, pc.convert_datetime, text + tail)
    _same(date_value, pc.convert_date, text[:10])


@settings(max_examples=300, deadline=None)
@given(_DIGITS, _DIGITS, _DIGITS, st.sampled_from([" ", "T"]), _DIGITS, _DIGITS, _DIGITS)
def test_generated_digit_soup_decodes_as_pymysql_does(
    y: str, m: str, d: str, sep: str, hh: str, mm: str, ss: str
) -> None:
    text = f"{y}-{m}-{d}{sep}{hh}:{mm}:{ss}"
    _same(datetime_value, pc.convert_datetime, text)
    _same(date_value, pc.convert_date, f"{y}-{m}-{d}")


def test_mysqlclient_refuses_require_tls_and_bare_urls_take_pymysql_then() -> None:
    from poller.config import SourceConfig
    from poller.errors import ConfigError
    from poller.source.engine import make_engine

    with pytest.raises(ConfigError, match="does not take source"):
        make_engine(SourceConfig(url="mysql+mysqldb://u:p@127.0.0.1/d", require_tls=True))
    engine = make_engine(SourceConfig(url="mysql://u:p@127.0.0.1/d", require_tls=True))
    try:
        assert engine.dialect.driver == "pymysql"
    finally:
        engine.dispose()


def test_without_mysqlclient_bare_urls_take_pymysql(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.engine import make_url

    from poller.config import SourceConfig, drivers

    monkeypatch.setattr(drivers, "mysqlclient_installed", lambda: False)
    assert drivers.with_driver(make_url("mysql://u@h/d")).drivername == "mysql+pymysql"
    assert drivers.with_driver(make_url("mariadb://u@h/d")).drivername == "mariadb+pymysql"
    SourceConfig(url="mysql://u:p@127.0.0.1/d")  # validates: the driver module is PyMySQL's
