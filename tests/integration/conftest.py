"""The integration tests use the same client environment as the service tests."""

from tests.service.conftest import hf_client_env, transport  # noqa: F401  (fixtures, used by name)
