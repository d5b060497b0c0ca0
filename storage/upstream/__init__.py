"""The upstream hub of a pull-through mirror, reached over the Hub API (the only httpx user in storage)."""

from __future__ import annotations

from storage.settings import Settings
from storage.upstream.hub_client import HubUpstream


def open_upstream(settings: Settings) -> HubUpstream | None:
    """The configured upstream, or None when this hub mirrors nothing."""
    if not settings.mirror_upstream:
        return None
    token = settings.mirror_upstream_token.get_secret_value() if settings.mirror_upstream_token else None
    return HubUpstream(
        settings.mirror_upstream, token,
        timeout=settings.mirror_timeout_seconds, resume_seconds=settings.mirror_resume_seconds,
    )


__all__ = ["HubUpstream", "open_upstream"]
