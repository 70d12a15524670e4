"""The e-mail a failed nightly task sends (Airflow's SMTP notifier): subject and body templates and the
recipients from our settings. Data-quality failures send their own detailed report too
(personaflow/quality/alert.py); this one is for any task that fails.
"""

from __future__ import annotations

from airflow.providers.smtp.notifications.smtp import SmtpNotifier

FAILURE_SUBJECT = (
    "[personaflow] {{ ti.task_id }} failed for batch "
    # asset-triggered runs (personaflow_refresh) have no logical date, hence no `ds`
    "{{ (dag_run.conf or {}).get('batch_date') or ds | default('of the asset event') }}"
    " (try {{ ti.try_number }})"
)
FAILURE_BODY = """<p>Task <b>{{ ti.task_id }}</b> of <b>{{ ti.dag_id }}</b> failed.</p>
<p>Batch day: {{ (dag_run.conf or {}).get('batch_date') or ds | default('of the asset event') }}<br>
Run: {{ run_id }}<br>
Try: {{ ti.try_number }}</p>
<p>Reason:</p><pre>{{ exception }}</pre>
<p>Log: <a href="{{ ti.log_url }}">{{ ti.log_url }}</a></p>"""


def failure_notifier() -> SmtpNotifier:
    """The SMTP notifier every task's on_failure_callback sends through (connection `smtp_default`)."""
    # Recipients come from our settings (handed to Airflow by `personaflow up` / orchestrate.airflow_env);
    # reading them is all the parse-time work this does.
    from personaflow.core.settings import load

    s = load()
    return SmtpNotifier(
        to=list(s.alert_to) or ["data-team@localhost"],
        from_email=s.alert_from,
        subject=FAILURE_SUBJECT,
        html_content=FAILURE_BODY,
        smtp_conn_id="smtp_default",
    )
