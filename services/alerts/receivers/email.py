"""E-mail over SMTP (stdlib smtplib in a worker thread): plain text plus an HTML alternative.

`smtp_url` = smtp://user:pass@host:port?from=vigil@example.com&to=a@x,b@x (smtps:// for TLS
from the start, `starttls=true` in the query to upgrade). The Message-ID carries the
notification id, so a receiving system can drop a duplicate.
"""

from __future__ import annotations

import asyncio
import html
import smtplib
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from services.alerts.receivers import Outcome, key_numbers, redact
from services.alerts.receivers.slack import title_of
from services.alerts.routing import Receiver

TIMEOUT = 10.0


def message(notification: dict, sender: str, to: tuple[str, ...]) -> EmailMessage:
    """The e-mail for a notification.

    >>> n = {"id": "n1", "model_id": "fraud", "status": "firing", "model": {"owners": ["ana"]},
    ...      "alerts": [{"alert_id": "a1", "severity": "high", "status": "firing", "kind": "data_drift",
    ...                  "title": "Drift", "summary": "PSI 0.25", "model_id": "fraud",
    ...                  "latest": {"metrics": {"psi": 0.25}}}]}
    >>> m = message(n, "vigil@x.io", ("a@x.io",))
    >>> m["Subject"], m["Message-ID"], m.get_content_type()
    ('[HIGH] fraud: Drift', '<n1@vigil>', 'multipart/alternative')
    """
    model = notification.get("model") or {}
    title = title_of(notification)
    text, rows = [title, ""], []
    for a in notification["alerts"]:
        latest = a.get("latest") or {}
        numbers = ", ".join(f"{k}={v}" for k, v in key_numbers(latest.get("metrics")))
        text += [f"- [{a['severity']}] {a.get('title') or a['kind']} ({a.get('status')})",
                 f"  {a.get('summary') or ''}", f"  {numbers}"]
        rows.append(f"<tr><td>{html.escape(a['severity'])}</td><td>{html.escape(a.get('title') or a['kind'])}</td>"
                    f"<td>{html.escape(str(a.get('status')))}</td><td>{html.escape(a.get('summary') or '')}</td>"
                    f"<td>{html.escape(numbers)}</td></tr>")
    owners = ", ".join(model.get("owners") or []) or "none"
    text += ["", f"Model: {notification['model_id']}", f"Owners: {owners}"]
    runbook = model.get("runbook_url")
    if runbook:
        text.append(f"Runbook: {runbook}")
    body_html = (f"<h2>{html.escape(title)}</h2><table border='1' cellpadding='4'>"
                 "<tr><th>Severity</th><th>Alert</th><th>Status</th><th>Summary</th><th>Key numbers</th></tr>"
                 + "".join(rows) + "</table>"
                 f"<p>Model: {html.escape(notification['model_id'])}<br>Owners: {html.escape(owners)}"
                 + (f"<br><a href=\"{html.escape(runbook)}\">Runbook</a>" if runbook else "") + "</p>")
    msg = EmailMessage()
    msg["Subject"] = title
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Message-ID"] = f"<{notification['id']}@vigil>"
    msg.set_content("\n".join(text))
    msg.add_alternative(body_html, subtype="html")
    return msg


class Email:
    def __init__(self, receiver: Receiver):
        self.receiver = receiver

    def __repr__(self) -> str:
        return f"Email(name={self.receiver.name!r}, to={self.receiver.to!r})"

    def _send(self, msg: EmailMessage) -> None:
        parts = urlsplit(self.receiver.smtp_url.get_secret_value())
        query = parse_qs(parts.query)
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
        cls = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
        with cls(parts.hostname, port, timeout=TIMEOUT) as smtp:
            if query.get("starttls", ["false"])[0].lower() in ("1", "true", "yes"):
                smtp.starttls()
            if parts.username:
                smtp.login(unquote(parts.username), unquote(parts.password or ""))
            smtp.send_message(msg)

    async def send(self, notification: dict) -> Outcome:
        secret = self.receiver.smtp_url.get_secret_value()
        sender = self.receiver.sender or "vigil@localhost"
        password = urlsplit(secret).password
        try:
            await asyncio.to_thread(self._send, message(notification, sender, self.receiver.to))
        except smtplib.SMTPRecipientsRefused as exc:
            return Outcome(False, f"recipients refused: {sorted(exc.recipients)}", None)
        except smtplib.SMTPResponseException as exc:
            error = redact(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", secret, password)
            return Outcome(400 <= exc.smtp_code < 500 or exc.smtp_code == 421, error, None)
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome(True, redact(f"{type(exc).__name__}: {exc}", secret, password), None)
        return Outcome()
