"""Email reports end to end: a real PostgreSQL, a real DuckDB warehouse and a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html as html_module
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from pipelines import generator, mail, postgres, warehouse
from pipelines.reports import admin_data, delivery, family_data, render, schedule, service
from pipelines.settings import load
from test_extract import built_warehouse

END = dt.date(2026, 3, 29)  # a Sunday: the fleet's last week is Monday 23 to Sunday 29 March
AS_OF = dt.datetime(2026, 3, 31, tzinfo=dt.UTC)
TICK = dt.datetime(2026, 3, 30, 18, 0, tzinfo=dt.UTC)  # Monday; 23:30 in Kolkata, past 09:00 in every zone
RECIPIENTS = ["ops@cheeko.example", "founders@cheeko.example"]
FAST = delivery.RetryPolicy(attempts=3, base_delay=0.01)
ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = "00000000-0000-4000-8000-0000000000{:02d}"  # ids of the configs tests add; they sort before any other
HEADINGS = ("OVERVIEW", "ENGAGEMENT AND STREAKS", "GAMES AND LEARNING", "STORIES AND SONGS",
            "TOKEN USAGE AND ESTIMATED COST", "COGNOVA", "DATA QUALITY", "DELIVERY HEALTH")
SNAKE_CASE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
ISO_DATE_OR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}|T\d{2}:\d{2}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and answers as a test scripts it."""

    def __init__(self):
        self.received: list[tuple[str, bytes]] = []
        self.refuse: set[str] = set()
        self.data_replies: dict[str, list[str]] = {}  # recipient -> replies to give to DATA before accepting

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        replies = self.data_replies.get(envelope.rcpt_tos[0])
        if replies:
            return replies.pop(0)
        self.received.append((envelope.rcpt_tos[0], envelope.content))
        return "250 2.0.0 accepted"

    def messages(self, to: str | None = None) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for rcpt, raw in self.received
                if to is None or rcpt == to]


@pytest.fixture
def smtp():
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, f"smtp://127.0.0.1:{port}"
    controller.stop()


@pytest.fixture(scope="module")
def fleet(make_databases, tmp_path_factory):
    """Two weeks of a small fleet, extracted and built, as the report tick reads it."""
    pair = make_databases()
    tmp = tmp_path_factory.mktemp("reports")
    path, _ = built_warehouse(pair, tmp, generator.Options(devices=14, days=14, seed=11, end=END),
                              as_of=AS_OF, first_day=END - dt.timedelta(days=20), last_day=END)
    return pair, path


@pytest.fixture
def clean(fleet, tmp_path):
    """The fleet with no delivery record and the generator's admin config, and settings for this test."""
    pair, path = fleet
    with postgres.connect(pair.cheeko) as conn:
        conn.execute("TRUNCATE warehouse.email_deliveries, email_report_history")
        conn.execute("DELETE FROM email_report_config WHERE id::text LIKE '00000000-0000-4000-8000-%'")
        conn.execute("UPDATE email_report_config SET enabled = true, schedule_hour = 8, schedule_timezone = "
                     "'Asia/Kolkata', recipients = %s, sections = '{}', updated_at = now()", (json.dumps(RECIPIENTS),))
        conn.commit()
    return pair, path, tmp_path


def _settings(tmp_path: Path, smtp_url: str | None = None, **extra):
    env = {"WAREHOUSE_HOME": str(tmp_path / "home")} | ({"SMTP_URL": smtp_url} if smtp_url else {}) | extra
    return load(env)


def _tick(pair, path, settings, now=TICK, **kwargs):
    out = service.sender(settings, retry=FAST)
    with warehouse.connect(path) as con:
        return service.run_tick(settings, con, pair.cheeko, now, out=out, log=lambda _line: None, **kwargs)


def _history(url: str) -> list[dict]:
    with postgres.connect(url) as conn:
        cursor = conn.execute("SELECT report_date, recipients, status, error_message, report_data, sent_at "
                              "FROM email_report_history ORDER BY sent_at, report_date")
        names = [d.name for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def _deliveries(url: str, report: str = delivery.ADMIN) -> dict[str, tuple]:
    with postgres.connect(url) as conn:
        return {r: (s, a, e) for r, s, a, e in conn.execute(
            "SELECT recipient, status, attempts, error FROM warehouse.email_deliveries WHERE report = %s", (report,))}


def _set_config(url: str, **values) -> None:
    with postgres.connect(url) as conn:
        for column, value in values.items():
            conn.execute(f"UPDATE email_report_config SET {column} = %s, updated_at = now()", (value,))
        conn.commit()


def _admin(box: Mailbox) -> list[email.message.EmailMessage]:
    return [m for m in box.messages() if "daily report" in m["Subject"]]


def _config_id(url: str) -> str:
    """The generator's admin config (the one every test starts with)."""
    with postgres.connect(url) as conn:
        return conn.execute("SELECT id::text FROM email_report_config WHERE id::text NOT LIKE "
                            "'00000000-0000-4000-8000-%' ORDER BY id LIMIT 1").fetchone()[0]


def _add_config(url: str, n: int, *, recipients: list[str], timezone: str = "Asia/Kolkata", enabled: bool = True) -> str:
    config_id = TEST_CONFIG.format(n)
    with postgres.connect(url) as conn:
        conn.execute("INSERT INTO email_report_config (id, enabled, schedule_hour, schedule_timezone, recipients, "
                     "sections) VALUES (%s, %s, 8, %s, %s, '{}')", (config_id, enabled, timezone, json.dumps(recipients)))
        conn.commit()
    return config_id


def _visible(html: str) -> str:
    """What a reader of the HTML part sees: its text, without tags."""
    return html_module.unescape(re.sub(r"<[^>]+>", " ", html))


# -- the admin report's email ---------------------------------------------------------------------------------

def test_admin_report_mime_tree_resolves_every_cid(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    result = _tick(pair, path, _settings(tmp, url))
    assert [(d.report_date, d.status) for d in result.dispatches if d.report == delivery.ADMIN] == [(END, "sent")]
    messages = _admin(box)
    assert sorted(m["To"] for m in messages) == sorted(RECIPIENTS)  # one message each; nobody sees the others
    msg = messages[0]
    assert msg["Subject"] == "Cheeko daily report for Sun 29 Mar 2026"
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.get_payload()
    assert plain.get_content_type() == "text/plain" and "OVERVIEW" in plain.get_content()
    assert related.get_content_type() == "multipart/related"
    html_part, *images = related.get_payload()
    html = html_part.get_content()
    cids = set(re.findall(r'src="cid:([^"]+)"', html))
    attached = {part["Content-ID"].strip("<>") for part in images}
    assert cids == attached == {"active_devices", "total_tokens"}
    assert all(part.get_content_type() == "image/png" and part.get_content()[:8] == b"\x89PNG\r\n\x1a\n" for part in images)
    for tag in re.findall(r"<img[^>]+>", html):
        assert 'width="560"' in tag and 'height="200"' in tag
    assert "data:" not in html and len(html.encode()) < 100_000
    assert "<style" not in html and 'style="' in html  # css-inline moved every rule onto its elements
    assert 'class="preheader"' in html and 'width="600"' in html
    history = _history(pair.cheeko)
    assert [(h["status"], h["report_date"]) for h in history] == [("sent", END)]
    data = history[0]["report_data"]
    assert data["report_date"] == "2026-03-29" and data["window"]["hours"] == 24.0
    assert data["overview"]["active_devices"]["value"] > 0 and len(data["trend"]) == 14
    assert set(data["data_quality"]) >= {"mac_unnormalisable", "duplicate_events"}
    assert history[0]["sent_at"] is not None and sorted(history[0]["recipients"]) == sorted(RECIPIENTS)


def test_active_devices_count_the_config_zone_local_day(clean):
    pair, path, _tmp = clean
    tz = schedule.zone("Asia/Kolkata")
    with warehouse.connect(path) as con:
        data = service.admin_report_data(con, pair.cheeko, END, tz, AS_OF, config_id=_config_id(pair.cheeko))
        # Independently: distinct MACs with a qualifying event between Kolkata midnights (UTC+05:30).
        expected = con.execute(
            "SELECT count(DISTINCT mac_address) FROM staging.qualifying_events WHERE event_at >= TIMESTAMPTZ "
            "'2026-03-28 18:30:00+00' AND event_at < TIMESTAMPTZ '2026-03-29 18:30:00+00'").fetchone()[0]
    assert data["overview"]["active_devices"]["value"] == expected
    trend = {row["day"]: row["active_devices"] for row in data["trend"]}
    assert data["overview"]["active_devices"]["previous"] == trend["2026-03-28"]
    assert data["overview"]["active_devices"]["avg7"] == pytest.approx(
        sum(trend[f"2026-03-{d:02d}"] for d in range(22, 29)) / 7)


# -- delivery: refusals, retries, permanent failures -------------------------------------------------------------

def test_one_refused_recipient_does_not_stop_the_others(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    _set_config(pair.cheeko, recipients=json.dumps(["a@cheeko.example", "gone@cheeko.example", "b@cheeko.example"]))
    box.refuse.add("gone@cheeko.example")
    _tick(pair, path, _settings(tmp, url))
    assert sorted(m["To"] for m in _admin(box)) == ["a@cheeko.example", "b@cheeko.example"]
    status = _deliveries(pair.cheeko)
    assert status["gone@cheeko.example"][0] == "failed" and "550" in status["gone@cheeko.example"][2]
    history = _history(pair.cheeko)
    assert history[0]["status"] == "partial" and "gone@cheeko.example" in history[0]["error_message"]
    _tick(pair, path, _settings(tmp, url))  # a permanent refusal is not retried
    assert len(_admin(box)) == 2 and len(_history(pair.cheeko)) == 1


def test_transient_errors_are_retried_with_backoff_then_sent_once(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    box.data_replies["ops@cheeko.example"] = ["451 4.3.0 try again later", "421 4.7.0 busy"]
    _tick(pair, path, _settings(tmp, url))
    assert len(box.messages("ops@cheeko.example")) == 1
    assert _deliveries(pair.cheeko)["ops@cheeko.example"][:2] == ("sent", 3)
    assert _history(pair.cheeko)[0]["status"] == "sent"


def test_transient_errors_outlasting_the_tick_are_sent_by_the_next(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    box.data_replies["ops@cheeko.example"] = ["451 4.3.0 later"] * 3
    _tick(pair, path, _settings(tmp, url))
    assert _deliveries(pair.cheeko)["ops@cheeko.example"][0] == "retry" and not box.messages("ops@cheeko.example")
    _tick(pair, path, _settings(tmp, url))
    assert len(box.messages("ops@cheeko.example")) == 1 and len(box.messages("founders@cheeko.example")) == 1
    assert [h["status"] for h in _history(pair.cheeko)] == ["partial", "sent"]


def test_permanent_errors_are_recorded_as_failed(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    box.data_replies["ops@cheeko.example"] = ["554 5.7.1 rejected as spam"]
    _tick(pair, path, _settings(tmp, url))
    status, attempts, error = _deliveries(pair.cheeko)["ops@cheeko.example"]
    assert (status, attempts) == ("failed", 1) and "554" in error
    assert _history(pair.cheeko)[0]["status"] == "partial"


def test_all_recipients_failing_is_a_failed_history_row(clean):
    pair, path, tmp = clean
    port = _free_port()  # nothing listens: every connection is refused (transient, then left for the next tick)
    _tick(pair, path, _settings(tmp, f"smtp://127.0.0.1:{port}"))
    history = _history(pair.cheeko)
    assert history[0]["status"] == "failed" and "connection" in history[0]["error_message"].lower()


# -- never twice ----------------------------------------------------------------------------------------------

class CrashAfterSending:
    """Delivers the message, then dies before the pipeline can record it (the process is killed mid-send)."""

    def __init__(self, inner, when):
        self.inner, self.when, self.description = inner, when, "crashing"

    def send(self, message):
        reply = self.inner.send(message)
        if self.when(message):
            raise SystemExit("killed during the SMTP call")
        return reply

    def close(self):
        self.inner.close()


def test_the_same_tick_twenty_times_with_crashes_sends_each_email_once(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    settings = _settings(tmp, url)
    crashes = {"after_claim": 0}

    def after_claim():
        if crashes["after_claim"] == 0:
            crashes["after_claim"] += 1
            raise RuntimeError("crash between claim and send")

    for run in range(20):
        out = service.sender(settings, retry=FAST)
        if run == 1:  # the second run dies right after a parent email left
            out = delivery.Sender(CrashAfterSending(out.transport, lambda m: "Cheeko" in m["Subject"]
                                                    and "daily" not in m["Subject"]), out.from_address, FAST)
        with warehouse.connect(path) as con:
            try:
                service.run_tick(settings, con, pair.cheeko, TICK, out=out, after_claim=after_claim, log=lambda _l: None)
            except (RuntimeError, SystemExit):
                pass
    received = [rcpt for rcpt, _raw in box.received]
    assert crashes["after_claim"] == 1
    admin = [m["To"] for m in _admin(box)]
    assert sorted(admin) == sorted(RECIPIENTS)  # the crash after claiming lost nothing and doubled nothing
    parents = [m for m in box.messages() if "daily report" not in m["Subject"]]
    assert parents and len({(m["To"], m["Subject"]) for m in parents}) == len(parents)
    assert len(received) == len(admin) + len(parents)
    with postgres.connect(pair.cheeko) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM warehouse.email_deliveries "
                                     "WHERE recipient <> '' GROUP BY status").fetchall())
    assert statuses.get("unknown") == 1  # the one killed mid-send: delivered once, marked, never resent
    assert statuses.get("claimed", 0) == statuses.get("sending", 0) == 0
    assert [h["status"] for h in _history(pair.cheeko)] == ["sent"]


def test_a_tick_does_nothing_while_another_holds_the_lock(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    with delivery.tick_lock(pair.cheeko) as got:
        assert got
        result = _tick(pair, path, _settings(tmp, url))
    assert result.busy and not box.received


# -- bad configs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("column", "value", "message"), [
    ("schedule_timezone", "Mars/Olympus_Mons", "schedule_timezone 'Mars/Olympus_Mons' is not an IANA time zone"),
    ("recipients", json.dumps("ops@cheeko.example, founders@cheeko.example"), "recipients must be a non-empty JSON array"),
    ("recipients", json.dumps(["not an address", 42]), "recipients holds no valid email address"),
    ("sections", json.dumps(["overview"]), "sections must be a JSON object"),
])
def test_an_unusable_config_leaves_one_failed_history_row(clean, smtp, column, value, message):
    pair, path, tmp = clean
    box, url = smtp
    _set_config(pair.cheeko, **{column: value})
    _tick(pair, path, _settings(tmp, url))
    _tick(pair, path, _settings(tmp, url))  # the next hour does not repeat it
    history = _history(pair.cheeko)
    assert [h["status"] for h in history] == ["failed"] and not _admin(box)
    assert message in history[0]["error_message"] and "email_report_config" in history[0]["error_message"]


def test_invalid_addresses_fail_alone(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    _set_config(pair.cheeko, recipients=json.dumps(["ops@cheeko.example", "ops at cheeko"]))
    _tick(pair, path, _settings(tmp, url))
    assert [m["To"] for m in _admin(box)] == ["ops@cheeko.example"]
    history = _history(pair.cheeko)[0]
    assert history["status"] == "partial" and "'ops at cheeko' is not an email address" in history["error_message"]


# -- schedule, catch-up, DST ----------------------------------------------------------------------------------

def test_a_config_is_due_from_its_local_hour():
    tz = schedule.zone("Asia/Kolkata")
    before = dt.datetime(2026, 3, 30, 2, 29, tzinfo=dt.UTC)  # 07:59 in Kolkata
    at = dt.datetime(2026, 3, 30, 2, 30, tzinfo=dt.UTC)  # 08:00
    assert schedule.admin_due_dates(before, tz, 8, 3).latest == dt.date(2026, 3, 28)
    assert schedule.admin_due_dates(at, tz, 8, 3).latest == dt.date(2026, 3, 29)


@pytest.mark.parametrize(("day", "hours"), [(dt.date(2026, 3, 8), 23), (dt.date(2026, 11, 1), 25), (dt.date(2026, 3, 9), 24)])
def test_dst_days_are_23_or_25_hours(day, hours):
    start, end = schedule.local_day_window(day, schedule.zone("America/New_York"))
    assert (end - start) == dt.timedelta(hours=hours)


def test_dst_transition_day_report(clean, smtp):
    """New York's spring-forward day, 8 March 2026: a 23-hour report day, sent at 08:00 EDT, not EST."""
    pair, path, tmp = clean
    box, url = smtp
    _set_config(pair.cheeko, schedule_timezone="America/New_York")
    day_after_0759_edt = dt.datetime(2026, 3, 9, 11, 59, tzinfo=dt.UTC)
    day_after_0800_edt = dt.datetime(2026, 3, 9, 12, 0, tzinfo=dt.UTC)
    _tick(pair, path, _settings(tmp, url), now=day_after_0759_edt)
    assert {h["report_date"] for h in _history(pair.cheeko)} == {dt.date(2026, 3, 7)}
    _tick(pair, path, _settings(tmp, url), now=day_after_0800_edt)
    history = {h["report_date"]: h for h in _history(pair.cheeko)}
    data = history[dt.date(2026, 3, 8)]["report_data"]
    assert data["window"] == {"start": "2026-03-08T05:00:00+00:00", "end": "2026-03-09T04:00:00+00:00", "hours": 23.0}
    with warehouse.connect(path) as con:
        expected = con.execute(
            "SELECT count(DISTINCT mac_address) FROM staging.qualifying_events WHERE event_at >= TIMESTAMPTZ "
            "'2026-03-08 05:00:00+00' AND event_at < TIMESTAMPTZ '2026-03-09 04:00:00+00'").fetchone()[0]
    assert data["overview"]["active_devices"]["value"] == expected
    assert any("Sun 08 Mar 2026" in m["Subject"] for m in _admin(box))


def test_catch_up_is_bounded_older_days_are_recorded_as_skipped(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    settings = _settings(tmp, url, WAREHOUSE_REPORT_CATCHUP_DAYS="2")
    _tick(pair, path, settings, now=dt.datetime(2026, 3, 21, 3, 0, tzinfo=dt.UTC))  # sends 20 March
    _tick(pair, path, settings, now=TICK)  # down for a week: 29 March is on time, 28 delayed, 21-27 skipped
    history = {h["report_date"]: h["status"] for h in _history(pair.cheeko)}
    assert history[dt.date(2026, 3, 20)] == "sent" and history[dt.date(2026, 3, 29)] == "sent"
    assert history[dt.date(2026, 3, 28)] == "sent"
    assert [d for d, s in sorted(history.items()) if s == "skipped"] == [dt.date(2026, 3, d) for d in range(21, 28)]
    subjects = sorted({m["Subject"] for m in _admin(box)})
    assert "[delayed] Cheeko daily report for Sat 28 Mar 2026" in subjects
    assert "Cheeko daily report for Sun 29 Mar 2026" in subjects


# -- weekly parent emails -------------------------------------------------------------------------------------

def test_parent_emails_hold_only_their_own_family(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    with postgres.connect(pair.cheeko) as conn:  # names no two kids share, to look for in every email
        conn.execute("UPDATE kid_profile SET nickname = 'Kid' || id || 'Qz'")
        kids = {str(k): (email_, lang) for k, email_, lang in conn.execute(
            "SELECT k.id, p.email, p.language FROM kid_profile k JOIN parent_profile p ON p.user_id = k.user_id")}
        conn.commit()
    _tick(pair, path, _settings(tmp, url))
    parents = [m for m in box.messages() if "daily report" not in m["Subject"]]
    assert len(parents) >= 3
    for msg in parents:
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        named = set(re.findall(r"Kid(\d+)Qz", msg["Subject"] + html + text))
        assert len(named) == 1, f"{msg['To']} got data of kids {named}"
        kid = named.pop()
        assert msg["To"] == kids[kid][0]  # to that kid's parent
        assert msg["List-Unsubscribe"].startswith("<https://") and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        language = kids[kid][1] if kids[kid][1] in ("en", "hi", "es") else "en"
        assert msg["Content-Language"] == language
        assert "Week" not in msg["Subject"] or language == "en"
    with postgres.connect(pair.cheeko) as conn:
        skipped = conn.execute("SELECT count(*) FROM warehouse.email_deliveries WHERE report = 'parent_weekly' "
                               "AND status = 'skipped'").fetchone()[0]
        opted_in = len(family_data.recipients(pair.cheeko))
    assert len(parents) + skipped == opted_in  # every opted-in kid: an email, or skipped for an empty week


def test_family_data_reads_only_the_kids_devices(clean):
    pair, path, _tmp = clean
    targets = family_data.recipients(pair.cheeko)
    with warehouse.connect(path) as con:
        for target in targets:
            data = family_data.build(con, target, dt.date(2026, 3, 23))
            if data is None:
                continue
            macs = {m for (m,) in con.execute("SELECT mac_address FROM staging.devices WHERE kid_id = ?", [target.kid_id]).fetchall()}
            active = {d for (d,) in con.execute(
                "SELECT DISTINCT activity_date FROM marts.daily_device_activity WHERE mac_address IN (SELECT unnest(?)) "
                "AND activity_date BETWEEN '2026-03-23' AND '2026-03-29'", [list(macs)]).fetchall()}
            assert data["kid_id"] == target.kid_id and data["active_days"] == len(active)
            assert 1 <= len(data["tips"]) <= 3


def test_parents_opted_out_get_nothing(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    with postgres.connect(pair.cheeko) as conn:
        conn.execute("UPDATE parent_profile SET weekly_report = false")
        conn.commit()
    try:
        _tick(pair, path, _settings(tmp, url))
        assert not [m for m in box.messages() if "daily report" not in m["Subject"]]
    finally:
        with postgres.connect(pair.cheeko) as conn:
            conn.execute("UPDATE parent_profile SET weekly_report = true")
            conn.commit()


# -- transports -----------------------------------------------------------------------------------------------

def test_no_smtp_url_writes_eml_files_to_the_outbox(clean):
    pair, path, tmp = clean
    settings = _settings(tmp)
    _tick(pair, path, settings)
    files = sorted(settings.outbox.glob("admin_daily.*.eml"))
    assert len(files) == 2
    assert email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)["Subject"].endswith("29 Mar 2026")


def test_dry_run_writes_emails_and_records_nothing(clean):
    pair, path, tmp = clean
    settings = _settings(tmp, WAREHOUSE_REPORT_DRY_RUN="1")
    _tick(pair, path, settings)
    assert len(list(settings.dry_run_outbox.glob("admin_daily.*.eml"))) == 2
    assert not _history(pair.cheeko) and not _deliveries(pair.cheeko) and not _deliveries(pair.cheeko, delivery.PARENT)


class _Accounts:
    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"reports" and auth_data.password == b"s3cret"
        return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
def test_smtp_over_tls_with_authentication(tmp_path, scheme):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_tls)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    box, port = Mailbox(), _free_port()
    if scheme == "smtps":
        # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; this connection is TLS from the first byte.
        controller = Controller(box, hostname="127.0.0.1", port=port, ssl_context=server_tls,
                                authenticator=_Accounts(), auth_require_tls=False)
    else:
        controller = Controller(box, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True,
                                authenticator=_Accounts(), auth_require_tls=True)
    controller.start()
    try:
        good = mail.transport(f"{scheme}://reports:s3cret@127.0.0.1:{port}?cafile={cafile}&timeout=5", tmp_path)
        msg = email.message.EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "r@cheeko.example", "a@cheeko.example", "hello"
        msg.set_content("hi")
        good.send(msg)
        good.close()
        assert [rcpt for rcpt, _ in box.received] == ["a@cheeko.example"]
        bad = mail.transport(f"{scheme}://reports:wrong@127.0.0.1:{port}?cafile={cafile}&timeout=5", tmp_path)
        with pytest.raises(mail.PermanentMailError, match="authentication failed"):
            bad.send(msg)
        untrusted = mail.transport(f"{scheme}://reports:s3cret@127.0.0.1:{port}?timeout=5", tmp_path)
        with pytest.raises(mail.PermanentMailError, match="not trusted"):
            untrusted.send(msg)
    finally:
        controller.stop()


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "smtp://h:99999", "smtp://h?timeout=soon"])
def test_a_bad_smtp_url_is_a_settings_error_naming_it(url):
    with pytest.raises(ValueError, match="SMTP_URL"):
        load({"SMTP_URL": url})


def test_preview_writes_html_that_a_browser_can_show(clean):
    pair, path, tmp = clean
    with warehouse.connect(path) as con:
        shown = service.preview(_settings(tmp), con, pair.cheeko, END, out_dir=tmp / "preview")
    page = shown.path
    assert shown.config_id == _config_id(pair.cheeko) and shown.text_path.exists()
    html = page.read_text()
    assert "cid:" not in html and "Cheeko daily report" in html
    for src in re.findall(r'src="([^"]+)"', html):
        assert (page.parent / src).exists()
    assert not _history(pair.cheeko)  # a preview records nothing


# -- what a reader sees: wording, plurals, labels, dates ------------------------------------------------------

@pytest.fixture
def admin_data_of_end(clean):
    """The admin report data of END for the generator's config, as a tick builds it."""
    pair, path, _tmp = clean
    with warehouse.connect(path) as con:
        return service.admin_report_data(con, pair.cheeko, END, schedule.zone("Asia/Kolkata"), AS_OF,
                                         config_id=_config_id(pair.cheeko))


@pytest.fixture
def parent_week(clean):
    """A kid's week that has games, mastery changes and stories, as family_data builds it."""
    pair, path, _tmp = clean
    with warehouse.connect(path) as con:
        weeks = [family_data.build(con, target, dt.date(2026, 3, 23)) for target in family_data.recipients(pair.cheeko)]
    weeks = [w for w in weeks if w is not None]
    return max(weeks, key=lambda w: (bool(w["mastery_changes"]), bool(w["stories"]), len(w["subjects"])))


def _with_problems(data: dict) -> dict:
    """``data`` with a delivery problem of every kind the section shows, and the data incomplete."""
    problems = [
        {"report": "admin_daily", "report_date": "2026-03-27", "status": "skipped", "emails": 0, "whole": True,
         "last_error": "not sent: more than 3 days late when the scheduler next ran"},
        {"report": "admin_daily", "report_date": "2026-03-26", "status": "failed", "emails": 1, "whole": False,
         "last_error": "550 mailbox unavailable"},
        {"report": "parent_weekly", "report_date": "2026-03-23", "status": "unknown", "emails": 2, "whole": False,
         "last_error": ""},
    ]
    return {**data, "delivery": {"days": 7, "problems": problems}, "data_through": data["window"]["start"]}


def test_text_part_has_one_blank_line_between_sections(admin_data_of_end, parent_week):
    text = render.render_admin(_with_problems(admin_data_of_end), list(admin_data.SECTIONS), delayed=True,
                               due_at=dt.datetime(2026, 3, 30, 2, 30, tzinfo=dt.UTC)).text
    lines = text.splitlines()
    for heading in HEADINGS:
        at = lines.index(heading)  # a heading is a line of its own, never glued to the section before
        assert lines[at - 1] == "" and lines[at - 2] != "", f"{heading}: {lines[at - 2:at + 1]}"
    assert "\n\n\n" not in text and text.endswith("\n")
    assert "needs_data" not in text and "21STORIES" not in text
    for language in ("en", "hi", "es"):
        parent = render.render_parent({**parent_week, "language": language}, unsubscribe_url="https://u.example/x").text
        assert "\n\n\n" not in parent
        _lang, strings = render.parent_strings(language)
        for key in ("games_heading", "mastery_heading", "content_heading", "tips_heading"):
            heading = strings[key].upper()
            at = parent.splitlines().index(heading)
            assert parent.splitlines()[at - 1] == "", f"{language} {key} glued to the line before it"


def test_no_raw_names_or_iso_timestamps_reach_a_reader(admin_data_of_end, parent_week):
    admin = render.render_admin(_with_problems(admin_data_of_end), list(admin_data.SECTIONS), delayed=True,
                                due_at=dt.datetime(2026, 3, 30, 2, 30, tzinfo=dt.UTC))
    rendered = {"admin": admin}
    for language in ("en", "hi", "es"):
        rendered[language] = render.render_parent({**parent_week, "language": language},
                                                  unsubscribe_url="https://u.example/x")
    for name, email_ in rendered.items():
        for part, content in (("text", email_.text), ("html", _visible(email_.html)), ("subject", email_.subject)):
            assert not SNAKE_CASE.findall(content), f"{name} {part}: {SNAKE_CASE.findall(content)}"
            assert not ISO_DATE_OR_TIME.findall(content), f"{name} {part}: {ISO_DATE_OR_TIME.findall(content)}"
    for part in (admin.text, _visible(admin.html)):  # the same things in both parts
        for phrase in ("Duplicate events", "Not enough answers yet" if any(
                m["mastery"] == "needs_data" for m in admin_data_of_end["games"]["mastery"]) else "Mastered",
                "Daily report, Fri 27 Mar 2026" if part is admin.text else "Fri 27 Mar 2026",
                "Sun 29 Mar 2026", "due Mon 30 Mar 2026, 08:00 IST", "up to Sat 28 Mar 2026, 18:30 UTC",
                "week of Mon 23 Mar 2026", "unknown (may have arrived)"):
            assert phrase in part, phrase
    games = {row["subject"] for row in admin_data_of_end["games"]["by_subject"]}
    assert games <= {"math_tutor", "riddle_solver", "word_ladder"}
    for game, shown in (("math_tutor", "Math"), ("riddle_solver", "Riddles"), ("word_ladder", "Word ladder")):
        if game in games:
            assert f"{shown}: " in admin.text and f">{shown}<" in admin.html
    spanish = rendered["es"]
    assert "Matemáticas" in spanish.text or "Adivinanzas" in spanish.text or "Escalera de palabras" in spanish.text


def test_one_of_a_thing_is_singular(admin_data_of_end, parent_week):
    data = json.loads(admin_data.report_json(admin_data_of_end), parse_float=Decimal)
    data["content"]["stories_completed"] |= {"value": 1, "change": 1, "change_pct": None}
    data["content"]["songs_completed"]["value"] = 1
    data["engagement"]["streaks"]["longest_current_streak"] = 1
    data["games"]["sessions"]["value"] = data["games"]["attempts"] = 1
    data["cognova"]["agent_runs"] = [{"agent_name": "Morning brief", "runs": 1, "success": 1, "errors": 0,
                                      "budget_exceeded": 0, "cancelled": 0, "success_rate": 1.0, "cost_usd": None}]
    data["delivery"] = {"days": 7, "problems": [{"report": "admin_daily", "report_date": "2026-03-28", "status": "failed",
                                                 "emails": 1, "whole": False, "last_error": "550"}]}
    admin = render.render_admin(data, list(admin_data.SECTIONS))
    for part in (admin.text, _visible(admin.html)):
        for singular in ("1 story finished", "1 song finished", "1 day", "1 game session", "1 answer,"):
            assert re.search(re.escape(singular).replace(r"\ ", r"\s+"), part), singular
        for wrong in ("1 stories", "1 songs", "1 days", "1 runs", "1 answers", "1 sessions", "1 emails"):
            assert not re.search(r"(?<![\d,.])" + re.escape(wrong).replace(r"\ ", r"\s+"), part), wrong
    assert "Agent Morning brief: 1 run," in admin.text and "1 email failed" in admin.text
    week = {**parent_week, "active_days": 1, "minutes": 1, "streak_days": 1,
            "subjects": [{"subject": "math_tutor", "attempts": 1, "correct": 1, "accuracy": 1.0}]}
    expected = {"en": ("on 1 day this week", "1 minute learning", "answered 1 question this week", "1 day in a row"),
                "es": ("en 1 día esta", "pasó 1 minuto", "respondió 1 pregunta esta", "1 día seguido"),
                "hi": ("1 दिन में", "1 मिनट सीखते", "1 प्रश्न के उत्तर", "1 दिन लगातार")}
    plural = {"en": ("on 3 days this week", "answered 4 questions"), "es": ("en 3 días esta", "respondió 4 preguntas"),
              "hi": ("3 दिनों में", "4 प्रश्नों के उत्तर")}
    for language, phrases in expected.items():
        one = render.render_parent({**week, "language": language}, unsubscribe_url="https://u.example/x")
        for phrase in phrases:  # the counts of the preheader are in the HTML part only (inbox preview text)
            assert phrase in one.text + _visible(one.html), (language, phrase)
        several = render.render_parent({**week, "language": language, "active_days": 3, "streak_days": 3,
                                        "subjects": [{**week["subjects"][0], "attempts": 4}]},
                                       unsubscribe_url="https://u.example/x")
        for phrase in plural[language]:
            assert phrase in several.text + _visible(several.html), (language, phrase)
    assert render.plural_form("hi", 0) == "one" and render.plural_form("en", 0) == "other"
    assert render.plural_form("es", 1) == "one" and render.plural_form("es", 2) == "other"



def _delivery_rows(url: str, rows: list[tuple]) -> None:
    """Delivery records as earlier ticks would have left them: (report, subject_key, date, recipient, status, error)."""
    with postgres.connect(url) as conn:
        for row in rows:
            conn.execute("INSERT INTO warehouse.email_deliveries (report, subject_key, report_date, recipient, status, "
                         "error) VALUES (%s, %s, %s, %s, %s, %s)", row)
        conn.commit()


def test_delivery_health_shows_only_its_own_configs_problems(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    a = _config_id(pair.cheeko)
    b = _add_config(pair.cheeko, 1, recipients=["b@cheeko.example"])
    day = END - dt.timedelta(days=3)
    rows = [(delivery.ADMIN, a, day, "ops@cheeko.example", "failed", "550 mailbox of config A full"),
            (delivery.ADMIN, b, day, "", "skipped", "config B was down: not sent"),
            (delivery.PARENT, "999999", dt.date(2026, 3, 23), "", "failed", "kid 999999: no valid email address"),
            (delivery.PARENT, "999998", dt.date(2026, 3, 23), "", "skipped", "no activity that week")]
    for config, recipients in ((a, RECIPIENTS), (b, ["b@cheeko.example"])):  # the days between were sent
        rows += [(delivery.ADMIN, config, END - dt.timedelta(days=n), r, "sent", None) for n in (1, 2) for r in recipients]
    _delivery_rows(pair.cheeko, rows)
    _tick(pair, path, _settings(tmp, url))
    texts = {m["To"]: m.get_body(("plain",)).get_content() for m in _admin(box)}
    htmls = {m["To"]: _visible(m.get_body(("html",)).get_content()) for m in _admin(box)}
    assert sorted(texts) == sorted([*RECIPIENTS, "b@cheeko.example"])  # END only, for both configs
    for to, own, other in (("ops@cheeko.example", "550 mailbox of config A full", "config B was down"),
                           ("b@cheeko.example", "config B was down", "550 mailbox of config A full")):
        for part in (texts[to], htmls[to]):
            assert own in part and other not in part
            assert "kid 999999: no valid email address" in part  # the parent emails: in every config's report
            assert "no activity that week" not in part  # a week skipped by design is no delivery problem
    assert "Daily report, Thu 26 Mar 2026: 1 email failed" in texts["ops@cheeko.example"]
    assert "Daily report, Thu 26 Mar 2026: the whole report skipped" in texts["b@cheeko.example"]
    assert "Weekly parent emails, week of Mon 23 Mar 2026: 1 email failed" in texts["b@cheeko.example"]
    with postgres.connect(pair.cheeko) as conn:
        stored = {to: data["delivery"]["problems"] for to, data in conn.execute(
            "SELECT recipients[1], report_data FROM email_report_history WHERE report_date = %s", (END,))}
    assert {(p["report"], p["status"]) for p in stored["b@cheeko.example"]} == {
        (delivery.ADMIN, "skipped"), (delivery.PARENT, "failed")}


# -- money: Decimal in, exact out -------------------------------------------------------------------------------

def _money(data: dict) -> dict[str, Decimal | None]:
    """Every amount of money in a report's data, by where it is."""
    found = {f"trend.{row['day']}": row["est_cost_usd"] for row in data["trend"]}
    found |= {f"tokens.est_cost_usd.{k}": data["tokens"]["est_cost_usd"][k] for k in ("value", "previous", "change", "avg7")}
    found |= {f"by_model.{row['llm_model']}": row["est_cost_usd"] for row in data["tokens"]["by_model"]}
    found |= {f"cognova.{row['source']}": row["cost_usd"] for row in data["cognova"]["cost_by_source"]}
    found |= {f"agent.{row['agent_name']}": row["cost_usd"] for row in data["cognova"]["agent_runs"]}
    return found


def test_report_json_keeps_money_exact():
    big = Decimal("1234567890.12345678")  # 18 digits: no float holds it
    text = admin_data.report_json({"a": Decimal("0.01986634"), "b": big, "c": Decimal("0.10000000"), "d": None, "e": 1.5})
    assert json.loads(text) == {"a": 0.01986634, "b": "1234567890.12345678", "c": 0.1, "d": None, "e": 1.5}
    back = json.loads(text, parse_float=Decimal)
    assert back["a"] == Decimal("0.01986634") and Decimal(back["b"]) == big and back["c"] == Decimal("0.1")
    assert render._fmt(back["b"], "money") == "$1,234,567,890.12" and render._fmt(Decimal("-0.5"), "money", True) == "-$0.50"


def test_money_round_trips_exactly_through_report_history(clean, smtp):
    pair, path, tmp = clean
    box, url = smtp
    _tick(pair, path, _settings(tmp, url), now=TICK)
    with warehouse.connect(path) as con:
        built = service.admin_report_data(con, pair.cheeko, END, schedule.zone("Asia/Kolkata"), TICK,
                                          config_id=_config_id(pair.cheeko))
    money = _money(built)
    amounts = [v for v in money.values() if v is not None]
    assert amounts and all(isinstance(v, Decimal) for v in amounts)  # no DOUBLE on the way from the marts
    assert any(v.as_tuple().exponent <= -5 for v in amounts)  # sub-cent amounts, where a float sum would drift
    with postgres.connect(pair.cheeko) as conn:
        (text,) = conn.execute("SELECT report_data::text FROM email_report_history WHERE report_date = %s",
                               (END,)).fetchone()
    stored = _money(json.loads(text, parse_float=Decimal))
    assert stored.keys() == money.keys()
    for where, amount in money.items():
        back = stored[where]
        assert (back is None if amount is None else Decimal(back) == amount), (where, amount, back)
    # An amount no float can hold is stored as a string, and comes back digit for digit.
    big = {"cost": Decimal("1234567890.12345678")}
    delivery.write_history(pair.cheeko, END, ["x@cheeko.example"], "sent", None, big, subject_key="money", settled=[])
    with postgres.connect(pair.cheeko) as conn:
        (text,) = conn.execute("SELECT report_data::text FROM email_report_history WHERE recipients = %s",
                               (["x@cheeko.example"],)).fetchone()
    assert Decimal(json.loads(text)["cost"]) == big["cost"]


# -- warehouse report preview ------------------------------------------------------------------------------------

def _warehouse_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=300, check=False)


def test_report_preview_command_picks_a_usable_config_and_says_which(clean):
    pair, path, tmp = clean
    good = _config_id(pair.cheeko)
    broken = _add_config(pair.cheeko, 1, recipients=RECIPIENTS, timezone="Mars/Olympus_Mons")  # first by id
    env = {k: v for k, v in os.environ.items() if k not in ("CHEEKO_DATABASE_URL", "COGNOVA_DATABASE_URL")}
    env |= pair.environ() | {"WAREHOUSE_HOME": str(tmp / "home"), "WAREHOUSE_DUCKDB_PATH": str(path)}
    out = tmp / "preview"

    first_valid = _warehouse_cli(env, "report", "preview", "--date", str(END), "--out", str(out))
    assert first_valid.returncode == 0, first_valid.stderr
    assert f"with email_report_config {good}:" in first_valid.stdout
    assert f"passed over: email_report_config {broken}: schedule_timezone" in first_valid.stdout
    assert (out / f"admin-{END}.html").exists() and (out / f"admin-{END}.txt").exists()

    chosen = _warehouse_cli(env, "report", "preview", "--config", good, "--out", str(out))  # day: its latest whole
    assert chosen.returncode == 0, chosen.stderr
    assert f"with email_report_config {good}:" in chosen.stdout and "passed over" not in chosen.stdout

    refused = _warehouse_cli(env, "report", "preview", "--config", broken, "--date", str(END), "--out", str(out))
    assert refused.returncode == 2
    assert f"email_report_config {broken}: schedule_timezone 'Mars/Olympus_Mons' is not an IANA time zone" in refused.stderr

    unknown = _warehouse_cli(env, "report", "preview", "--config", TEST_CONFIG.format(99), "--out", str(out))
    assert unknown.returncode == 2 and f"email_report_config {TEST_CONFIG.format(99)}: no such config" in unknown.stderr
    assert not _history(pair.cheeko)  # a preview records nothing
