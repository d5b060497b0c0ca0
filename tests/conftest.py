"""Shared test configuration."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI runs more examples than a developer's quick loop; both are bounded so the suite stays fast.
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Fixtures for real servers live in their own modules (an S3 server started on 127.0.0.1, databases).
pytest_plugins = ["tests.fixtures_s3", "tests.fixtures_db"]
