"""The nightly HTML report: one self-contained page per run that a person opens
(personaflow/report/nightly.py)."""
