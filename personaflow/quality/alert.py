"""The data-quality alert email: built from a `CheckResult`, every failed expectation named (sent by
personaflow/core/alert.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from email.message import EmailMessage

from personaflow.core.alert import new_message
from personaflow.quality.checks import CheckResult

log = logging.getLogger(__name__)


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


