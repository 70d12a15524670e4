"""The alert sender every stage shares: an e-mail's envelope, kept as .eml, sent over plain SMTP.

The .eml is written before sending so the alert survives a dead mail server, and a send error is
logged, not raised: the failed data (or the missing file, or the drift) is what fails or flags the
task, never the mailer. What an alert says is its stage's business (quality/alert.py builds the
data-quality one).
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        # Callers pass lists from settings; a tuple keeps the frozen config hashable and unshared.
        object.__setattr__(self, "recipients", tuple(self.recipients))
        if not self.recipients:
            raise ValueError("SmtpConfig needs at least one recipient")


def new_message(subject: str, sender: str, recipients: Sequence[str], severity: str) -> EmailMessage:
    """An alert's envelope, the same for every kind (data quality, missing data, drift)."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="personaflow.local")
    msg["X-Personaflow-Severity"] = severity
    return msg


def write_eml(message: EmailMessage, reports_dir: Path) -> Path:
    """Keep the alert on disk under `reports_dir/alerts/`; the name carries severity, stage, target and
    UTC time so retries never overwrite."""
    folder = reports_dir / "alerts"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    label = (
        f"{message['X-Personaflow-Severity'] or 'critical'}_{message['X-Personaflow-Stage']}_"
        f"{message['X-Personaflow-Target']}"
    )
    path = folder / f"alert_{re.sub(r'[^A-Za-z0-9_.-]+', '-', label)}_{stamp}.eml"
    path.write_bytes(message.as_bytes())
    return path


def send_alert(message: EmailMessage, smtp: SmtpConfig, reports_dir: Path) -> tuple[bool, Path]:
    """Write the .eml, then try SMTP. Returns (sent, eml_path); never raises for a mail failure."""
    eml = write_eml(message, reports_dir)
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            client.send_message(message, from_addr=smtp.sender, to_addrs=list(smtp.recipients))
    except (OSError, smtplib.SMTPException) as exc:
        log.error(
            "alert %r not sent via SMTP %s:%s (%s); kept at %s",
            message["Subject"],
            smtp.host,
            smtp.port,
            exc,
            eml,
        )
        return False, eml
    log.info(
        "alert %r sent to %s via %s:%s", message["Subject"], ", ".join(smtp.recipients), smtp.host, smtp.port
    )
    return True, eml
