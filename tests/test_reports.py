"""Email reports end to end: a real PostgreSQL, a real DuckDB warehouse and a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from pipelines import generator, mail, postgres, warehouse
from pipelines.reports import delivery, family_data, schedule, service
from pipelines.settings import load
from test_extract import built_warehouse

END = dt.date(2026, 3, 29)  # a Sunday: the fleet's last week is Monday 23 to Sunday 29 March
AS_OF = dt.datetime(2026, 3, 31, tzinfo=dt.UTC)
TICK = dt.datetime(2026, 3, 30, 18, 0, tzinfo=dt.UTC)  # Monday; 23:30 in Kolkata, past 09:00 in every zone
RECIPIENTS = ["ops@cheeko.example", "founders@cheeko.example"]
FAST = delivery.RetryPolicy(attempts=3, base_delay=0.01)


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
        data = service.admin_report_data(con, pair.cheeko, END, tz, AS_OF)
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
        page = service.preview(_settings(tmp), con, pair.cheeko, END, out_dir=tmp / "preview")
    html = page.read_text()
    assert "cid:" not in html and "Cheeko daily report" in html
    for src in re.findall(r'src="([^"]+)"', html):
        assert (page.parent / src).exists()
    assert not _history(pair.cheeko)  # a preview records nothing
