"""The data-quality alert email: built from a `CheckResult`, kept as .eml, sent over plain SMTP.

The .eml is written before sending so the report survives a dead mail server, and a send error is
logged, not raised: the failed data is what fails the pipeline task, never the mailer.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from quality.checks import CheckResult

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


def build_alert(
    *, stage: str, target: str, result: CheckResult, sender: str, recipients: Sequence[str], note: str = ""
) -> EmailMessage:
    """Email naming the stage, the batch/date (`target`), and every failed expectation with samples."""
    failed = len(result.failures)
    msg = EmailMessage()
    msg["Subject"] = (
        f"[personaflow] data quality FAILED: {stage} {target} "
        f"({failed} of {result.n_expectations} expectations failed)"
    )
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain="personaflow.local")
    msg["X-Personaflow-Stage"] = stage
    msg["X-Personaflow-Target"] = target

    lines = [
        f"Stage:  {stage}",
        f"Target: {target}",
        f"Suite:  {result.suite} ({result.n_rows} rows checked, {failed} failed expectations)",
    ]
    if note:
        lines += ["", note]
    for n, failure in enumerate(result.failures, start=1):
        where = f"{failure.table}.{failure.column}" if failure.column else failure.table
        lines += [
            "",
            f"{n}. {failure.expectation} on {where}",
            f"   observed: {json.dumps(failure.observed, default=str)}",
            f"   expected: {json.dumps(failure.expected, default=str)}",
        ]
        if failure.unexpected_count:
            lines.append(f"   bad rows: {failure.unexpected_count}")
        if failure.sample_values:
            lines.append(f"   sample bad values: {json.dumps(failure.sample_values, default=str)}")
        for row in failure.sample_rows:
            lines.append(f"   row: {json.dumps(row, default=str)}")
    # Plain 8bit keeps the .eml readable as text (the default would quote-print lines over 78 chars);
    # RFC 5322 still caps a line at 998 characters.
    body = "\n".join(line if len(line) <= 990 else line[:987] + "..." for line in lines) + "\n"
    msg.set_content(body, cte="8bit" if body.isascii() else "quoted-printable")
    return msg


def write_eml(message: EmailMessage, reports_dir: Path) -> Path:
    """Keep the alert on disk; the name carries stage, target and UTC time so retries never overwrite."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    label = f"{message['X-Personaflow-Stage']}_{message['X-Personaflow-Target']}"
    path = reports_dir / f"alert_{re.sub(r'[^A-Za-z0-9_.-]+', '-', label)}_{stamp}.eml"
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
