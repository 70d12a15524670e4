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

from personaflow.quality.checks import CheckResult

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


def build_alert(
    *, stage: str, target: str, result: CheckResult, sender: str, recipients: Sequence[str], note: str = ""
) -> EmailMessage:
    """Email naming the stage, the batch/date (`target`), the severity, and every failed expectation
    (observed vs expected, sample bad values and rows), with the path of the GX Data Docs page."""
    failed, warned = len(result.failures), len(result.warnings)
    level = "FAILED" if failed else "WARNING"
    counts = (
        f"{failed} of {result.n_expectations} expectations failed"
        + (f", {warned} warning(s)" if warned else "")
        if failed
        else f"{warned} warning(s) of {result.n_expectations} expectations; the run goes on"
    )
    subject = f"[personaflow] data quality {level}: {stage} {target} ({counts})"
    msg = new_message(subject, sender, recipients, result.severity)
    msg["X-Personaflow-Stage"] = stage
    msg["X-Personaflow-Target"] = target

    lines = [
        f"Severity: {level}",
        f"Stage:    {stage}",
        f"Target:   {target}",
        f"Suite:    {result.suite} ({result.n_rows} rows checked, {failed} failed expectations, "
        f"{warned} warnings)",
    ]
    if result.docs:
        lines.append(f"Report:   {result.docs}")
    if result.docs_index:
        lines.append(f"All runs: {result.docs_index}")
    if note:
        lines += ["", note]
    sections = (
        ("FAILED (critical): the batch is stopped", result.failures),
        ("WARNING: reported, the run goes on", result.warnings),
    )
    for title, items in sections:
        if items:
            lines += ["", f"== {title} =="]
        for n, failure in enumerate(items, start=1):
            lines += _describe(n, failure)
    if result.notices:
        lines += ["", "== Noted (within allowances) =="]
        for f in result.notices:
            where = f"{f.table}.{f.column}" if f.column else f.table
            lines.append(f"- {f.expectation} on {where}: {json.dumps(f.observed, default=str)}")
    # Plain 8bit keeps the .eml readable as text (the default would quote-print lines over 78 chars);
    # RFC 5322 still caps a line at 998 characters.
    body = "\n".join(line if len(line) <= 990 else line[:987] + "..." for line in lines) + "\n"
    msg.set_content(body, cte="8bit" if body.isascii() else "quoted-printable")
    return msg


def _describe(n: int, failure) -> list[str]:
    where = f"{failure.table}.{failure.column}" if failure.column else failure.table
    lines = [f"{n}. [{failure.severity}] {failure.expectation} on {where}"]
    if failure.description:
        lines.append(f"   rule:     {failure.description}")
    lines += [
        f"   observed: {json.dumps(failure.observed, default=str)}",
        f"   expected: {json.dumps(failure.expected, default=str)}",
    ]
    if failure.unexpected_count:
        lines.append(f"   bad rows: {failure.unexpected_count}")
    if failure.sample_values:
        lines.append(f"   sample bad values: {json.dumps(failure.sample_values, default=str)}")
    for row in failure.sample_rows:
        lines.append(f"   row: {json.dumps(row, default=str)}")
    return lines


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
