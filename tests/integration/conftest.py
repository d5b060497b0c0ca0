"""The integration tests use the same client environment as the service tests."""

from tests.service.conftest import hf_client_env  # noqa: F401  (a fixture, used by name)
