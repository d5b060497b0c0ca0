"""Secrets never reach a log line: signed upload URLs lose their signature in the access log."""

from __future__ import annotations

import logging
import re

_SIGNATURE = re.compile(r"(?<=[?&]signature=)[^&\s\"]+")
MASK = "***"


def mask_secrets(text: str) -> str:
    return _SIGNATURE.sub(MASK, text)


class MaskSecrets(logging.Filter):
    """Masks signatures in a record's message and in its arguments (uvicorn passes the path as one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_secrets(a) if isinstance(a, str) else a for a in record.args)
        return True


def install(logger_names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error")) -> None:
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskSecrets) for f in logger.filters):
            logger.addFilter(MaskSecrets())
