"""Turn a report's data into an email: Jinja2 templates in ``reports/``, CSS inlined, charts by CID.

The MIME tree of every email::

    multipart/alternative
    ├── text/plain                 (the same content, for clients that show no HTML)
    └── multipart/related
        ├── text/html              (600 px table layout, styles inlined, preheader)
        └── image/png ...          (one per chart, Content-ID referenced as cid:)
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from zoneinfo import ZoneInfo

import css_inline
import jinja2

from pipelines.reports import admin_data
from pipelines.reports.charts import Chart, trend_chart

TEMPLATES = Path(__file__).resolve().parents[2] / "reports"
MAX_HTML_BYTES = 100_000  # Gmail clips a message body beyond about 102 KB
LABELS = tomllib.loads((TEMPLATES / "labels.toml").read_text(encoding="utf-8"))
_SNAKE_CASE = re.compile(r"[a-z0-9_ ]+")  # an app's internal name: shown with its words, never as it is


@dataclass(frozen=True)
class Rendered:
    """One email's content, before addressing."""

    subject: str
    html: str
    text: str
    charts: tuple[Chart, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)


def _fmt(value, kind: str = "num", signed: bool = False) -> str:
    """A number for people: ``num`` (whole, or one decimal), ``float1``, ``sec`` or ``money`` (US dollars).

    Money may be a ``Decimal`` (the marts' DECIMAL(18, 8)), or a string where
    :func:`admin_data.report_json` had to store it as one to keep it exact.
    """
    if value is None:
        return "–"
    if kind == "money" and isinstance(value, str):
        value = Decimal(value)
    sign = "+" if signed and value > 0 else "-" if value < 0 else ""
    size = abs(value)
    if kind == "money":
        return f"{sign}${size:,.2f}" if size >= Decimal("0.01") or size == 0 else f"{sign}${size:,.4f}"
    if kind == "sec":
        return f"{sign}{size:,.2f} s"
    if kind == "float1":
        return f"{sign}{size:,.1f}"
    if isinstance(value, (float, Decimal)) and value != int(value):
        return f"{sign}{size:,.1f}"
    return f"{sign}{size:,.0f}"


def _pct(value, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:+.0f}%" if signed else f"{value * 100:.0f}%"


def plural_form(language: str, n) -> str:
    """Which form a count ``n`` takes in ``language``: ``"one"`` or ``"other"`` (the CLDR rules).

    English and Spanish use "one" for exactly 1; Hindi for 0 and 1 (CLDR: i = 0 or n = 1). Spanish's
    "many" (a round million: "1 millón de días") is left out: no count here reaches it.
    """
    if language == "hi":
        return "one" if n == 1 or int(n) == 0 else "other"
    return "one" if n == 1 else "other"


def counted(strings: dict, language: str, key: str, n) -> str:
    """The ``[counts.<key>]`` string of a language's strings in the form ``n`` takes, with ``{n}`` filled in."""
    forms = strings["counts"][key]
    return forms.get(plural_form(language, n), forms["other"]).format(n=_fmt(n))


def _plural(n, one: str, other: str) -> str:
    """English only (the admin report): ``one`` or ``other`` as :func:`plural_form` says for ``n``."""
    return one if plural_form("en", n) == "one" else other


def label(name, group: str, strings: dict | None = None) -> str:
    """What a reader sees for an internal ``name`` (a game type, a topic, a check...): the language's
    ``[group]`` table in ``strings``, else ``reports/labels.toml``, else, for a snake_case name, its words
    with a capital first letter. Never a raw snake_case name; other names (``gpt-4o-mini``) as they are."""
    if name is None:
        return "–"
    text = str(name)
    for table in ((strings or {}).get(group, {}), LABELS.get(group, {})):
        if text in table:
            return table[text]
    if not _SNAKE_CASE.fullmatch(text):
        return text
    words = " ".join(text.replace("_", " ").split())
    return words[:1].upper() + words[1:]


def _day(value) -> str:
    """A date for people, "Tue 31 Mar 2026", from a date or an ISO date; other text is left as it is."""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            return value  # not a date (a price sheet version, say)
    if value is None:
        return "–"
    return f"{value:%a %d %b %Y}"


def _when(value, zone: str | None = None) -> str:
    """An instant for people, "Tue 31 Mar 2026, 14:05 UTC": in UTC, or in the IANA ``zone`` when given."""
    if value is None:
        return "unknown"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(ZoneInfo(zone) if zone else dt.timezone.utc)
    return f"{value:%a %d %b %Y, %H:%M} {value.tzname()}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,  # a missing number is a bug, not an empty cell
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters["fmt"] = _fmt
    env.filters["pct"] = _pct
    env.filters["plural"] = _plural
    env.filters["label"] = label
    env.filters["day"] = _day
    env.filters["when"] = _when
    return env


ENV = _environment()


@functools.cache
def _css() -> str:
    return (TEMPLATES / "email.css").read_text()


def _inline(html: str) -> str:
    return css_inline.CSSInliner(keep_style_tags=False, load_remote_stylesheets=False).inline(html)


def _check(html: str, charts: tuple[Chart, ...]) -> None:
    """What "renders everywhere" promises, checked on every email rendered."""
    size = len(html.encode())
    if size > MAX_HTML_BYTES:
        raise ValueError(f"email HTML is {size:,} bytes; the limit is {MAX_HTML_BYTES:,} (Gmail clips beyond it)")
    if "data:" in html.replace("data: ", ""):
        raise ValueError("email HTML holds a data: URI; images must be attached by CID")
    for chart in charts:
        if f"cid:{chart.cid}" not in html:
            raise ValueError(f"chart {chart.cid} is attached but the HTML never refers to it")


def section_list(flags) -> tuple[list[str], list[str]]:
    """The sections to include, in report order, and warnings about the flags.

    ``email_report_config.sections`` is an object of booleans; a section it
    does not mention is included, so a new section reaches existing configs.
    """
    warnings: list[str] = []
    if flags is None:
        flags = {}
    if not isinstance(flags, dict):
        raise ValueError(f"sections must be a JSON object of true/false flags, got {type(flags).__name__}")
    for name in sorted(set(flags) - set(admin_data.SECTIONS)):
        warnings.append(f"sections.{name} is not a section (known: {', '.join(admin_data.SECTIONS)}); ignored")
    chosen = [name for name in admin_data.SECTIONS if flags.get(name, True) is not False]
    if not chosen:
        raise ValueError("sections turns every section off; there is nothing to send")
    return chosen, warnings


def admin_charts(data: dict, sections: list[str]) -> tuple[Chart, ...]:
    days = [row["day"] for row in data["trend"]]
    charts = []
    if "overview" in sections:
        charts.append(trend_chart("active_devices", "Active devices, last 14 days", days,
                                  [row["active_devices"] for row in data["trend"]]))
    if "tokens" in sections:
        charts.append(trend_chart("total_tokens", "Tokens, last 14 days", days,
                                  [row["total_tokens"] for row in data["trend"]]))
    return tuple(charts)


def render_admin(data: dict, sections: list[str], *, delayed: bool = False,
                 due_at: dt.datetime | None = None) -> Rendered:
    """The admin daily report for ``data`` (from :func:`admin_data.build`); ``due_at``: when a delayed one was due."""
    day = dt.date.fromisoformat(data["report_date"])
    subject = f"{'[delayed] ' if delayed else ''}Cheeko daily report for {day:%a %d %b %Y}"
    overview = data["overview"]["active_devices"]
    tokens = data["tokens"]["total_tokens"]["value"]
    preheader = (f"{_fmt(overview['value'])} {_plural(overview['value'], 'active device', 'active devices')} "
                 f"on {day:%a %d %b}"
                 + (f" ({_fmt(overview['change'], signed=True)} vs the day before)" if overview["change"] is not None else "")
                 + f", {_fmt(tokens)} {_plural(tokens, 'token', 'tokens')}.")
    charts = admin_charts(data, sections)
    through = data.get("data_through")
    context = {
        "data": data, "sections": sections, "delayed": delayed, "due_at": due_at, "subject": subject,
        "heading": "Cheeko daily report", "subheading": f"{day:%A %d %B %Y} · {data['timezone']}",
        "preheader": preheader, "charts": {c.cid: c for c in charts}, "lang": "en",
        "data_incomplete": bool(through) and through < data["window"]["end"],
        "css": _css(),
    }
    html = _inline(ENV.get_template("admin_daily.html.j2").render(context))
    text = ENV.get_template("admin_daily.txt.j2").render(context)
    _check(html, charts)
    return Rendered(subject=subject, html=html, text=text, charts=charts, headers={"Auto-Submitted": "auto-generated"})


# -- weekly parent emails -------------------------------------------------------------------------------------

def parent_strings(language: str | None) -> tuple[str, dict]:
    """The language to write in and its strings: the parent's when ``reports/parent_weekly/`` has it, else English."""
    wanted = (language or "en").strip().lower().split("-")[0].split("_")[0]
    folder = TEMPLATES / "parent_weekly"
    chosen = wanted if (folder / f"{wanted}.toml").exists() else "en"
    return chosen, tomllib.loads((folder / f"{chosen}.toml").read_text(encoding="utf-8"))


def render_parent(data: dict, *, unsubscribe_url: str) -> Rendered:
    """One kid's weekly email for their parent, from :func:`family_data.build`, in the parent's language."""
    language, strings = parent_strings(data["language"])
    week_start = dt.date.fromisoformat(data["week_start"])
    week_end = week_start + dt.timedelta(days=6)
    months = strings["months"]

    def count(key: str, n) -> str:
        return counted(strings, language, key, n)

    def name(value, group: str) -> str:
        return label(value, group, strings)

    attempts = sum(row["attempts"] for row in data["subjects"])
    fill = {"kid": data["kid_name"], "start": f"{week_start.day} {months[week_start.month - 1]}",
            "end": f"{week_end.day} {months[week_end.month - 1]}",
            "days": count("days", data["active_days"]), "minutes": count("minutes", data["minutes"]),
            "streak": count("streak", data["streak_days"]), "attempts": count("questions", attempts)}
    subject = strings["subject"].format(**fill)

    def tip_text(tip: dict) -> str:  # tips name topics and subjects by their internal names
        return strings["tips"][tip["key"]].format(**fill, title=tip.get("title", ""),
                                                  topic=name(tip.get("topic"), "topics"),
                                                  subject=name(tip.get("subject"), "games"))

    context = {
        "data": data, "s": strings, "fill": fill, "subject": subject, "lang": language, "count": count, "name": name,
        "heading": strings["heading"].format(**fill), "subheading": strings["subheading"].format(**fill),
        "preheader": strings["preheader"].format(**fill), "unsubscribe_url": unsubscribe_url,
        "tips": [tip_text(tip) for tip in data["tips"]], "css": _css(),
    }
    html = _inline(ENV.get_template("parent_weekly.html.j2").render(context))
    text = ENV.get_template("parent_weekly.txt.j2").render(context)
    _check(html, ())
    headers = {"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
               "Content-Language": language, "Auto-Submitted": "auto-generated"}
    return Rendered(subject=subject, html=html, text=text, headers=headers)


def message(rendered: Rendered, *, sender: str, recipient: str, message_id: str) -> EmailMessage:
    """The MIME message of ``rendered`` to one ``recipient`` (see the module docstring for its tree)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = rendered.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = message_id
    msg.set_content(rendered.text, subtype="plain", charset="utf-8")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8")
    for name, value in rendered.headers.items():  # after the content: set_content drops Content-* headers
        msg[name] = value
    html_part = msg.get_payload()[1]
    for chart in rendered.charts:
        html_part.add_related(chart.png, maintype="image", subtype="png", cid=f"<{chart.cid}>",
                              filename=f"{chart.cid}.png", disposition="inline")
    return msg


def message_id(report: str, subject_key: str, report_date: dt.date, recipient: str, domain: str) -> str:
    """A Message-ID fixed by what the email is, so a resend is recognisable as the same email."""
    digest = hashlib.sha256(f"{report}|{subject_key}|{report_date}|{recipient.lower()}".encode()).hexdigest()[:24]
    return f"<{report}.{report_date:%Y%m%d}.{digest}@{domain}>"
