"""Data quality: Great Expectations suites, quarantine of failed batches, SMTP alerts."""
