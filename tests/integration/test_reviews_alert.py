"""A quarantined reviews batch mails the data team, as a quarantined day of events does (issue 23):
a real SMTP server (aiosmtpd on 127.0.0.1) receives the alert, and the batch before it stays loaded."""

from __future__ import annotations

import duckdb
import pytest

from personaflow.core import settings as config
from personaflow.pipeline.reviews import import_reviews
from personaflow.quality.validate import DataQualityError
from tests.e2e_helpers import body_text

HEADER = ",Clothing ID,Age,Title,Review Text,Rating,Recommended IND,Department Name"
GOOD = ['0,767,33,,"Absolutely wonderful - silky and sexy",4,1,Intimate',
        '1,1077,60,Major flaws,"Ordered my usual size, outrageously small.",2,0,Dresses']  # fmt: skip
# the review text column left empty on 8 of 10 rows: each row reads fine, the batch check fails
BAD = [f"{i},767,33,,,5,1,Tops" for i in range(10, 18)] + ['18,767,33,,"nice",4,1,Tops',
                                                          '19,767,33,,"lovely",5,1,Tops']  # fmt: skip


def test_a_quarantined_reviews_batch_sends_one_alert_and_keeps_the_earlier_reviews(tmp_path, monkeypatch,
                                                                                   inbox):  # fmt: skip
    controller, handler = inbox
    home = tmp_path / "home"
    for name, value in {
        "PERSONAFLOW_HOME": home, "AIRFLOW_HOME": home / "airflow", "BENTOML_HOME": home / "bentoml",
        "PERSONAFLOW_FEATURES_DIR": home / "features", "PERSONAFLOW_SMTP_PORT": controller.port,
        "PERSONAFLOW_ALERT_TO": "data-team@example.test",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("PERSONAFLOW_WAREHOUSE", raising=False)
    monkeypatch.delenv("PERSONAFLOW_WAREHOUSE_URL", raising=False)
    s = config.load()
    good, bad = tmp_path / "good.csv", tmp_path / "bad_export.csv"
    good.write_text(HEADER + "\n" + "\n".join(GOOD) + "\n")
    bad.write_text(HEADER + "\n" + "\n".join(BAD) + "\n")
    before = len(handler.messages)

    import_reviews(good, "womens-clothing", s, score=False, marts=False)
    assert len(handler.messages) == before  # a passing batch sends nothing
    with pytest.raises(DataQualityError, match=r"quarantined.*alert sent") as failed:
        import_reviews(bad, "womens-clothing", s, score=False, marts=False)
    assert failed.value.alert_sent and failed.value.eml_path.is_file()

    [mail] = handler.messages[before:]  # exactly one, sent before the error was raised
    assert mail["To"] == "data-team@example.test" and "FAILED" in mail["Subject"]
    body = body_text(mail)
    assert "bad_export.csv" in body and "10 reviews" in body and "quarantine.reviews" in body
    assert "any_text" in body  # the failed expectation is named
    with duckdb.connect(str(s.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from raw.reviews").fetchone() == (2,)
        assert con.execute("select count(*) from quarantine.reviews").fetchone() == (10,)
