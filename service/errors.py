"""How errors leave the service: status from the error class, a JSON body, the headers the client reads.

The Hugging Face client turns a 404 into RepositoryNotFoundError, RevisionNotFoundError or
EntryNotFoundError by the ``X-Error-Code`` header alone, and shows ``X-Error-Message`` to the user; a 401
whose message is exactly ``INVALID_CREDENTIALS`` is reported as a bad token rather than a missing repository.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.core.errors import DeltahubError

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class Unauthorized(DeltahubError):
    """authentication required: {detail}"""

    status = 401


class Forbidden(DeltahubError):
    """forbidden: {detail}"""

    status = 403


class PayloadTooLarge(DeltahubError):
    """request body too large: {detail}"""

    status = 413


class BodyTooSlow(DeltahubError):
    """request body too slow: {detail}"""

    status = 408


class TooManyUploads(DeltahubError):
    """too many uploads at once: {detail}"""

    status = 429


class RangeNotSatisfiable(DeltahubError):
    """range not satisfiable: {detail}"""

    status = 416


class NotSupported(DeltahubError):
    """not supported by deltahub: {detail}"""

    # 501, not 500: the client retries 500/502/503/504 with back-off, which would only delay the message.
    status = 501


def _header_safe(message: str) -> str:
    """Header values are latin-1 and one line: escape the rest rather than drop the message."""
    one_line = " ".join(message.split())
    return one_line.encode("ascii", "backslashreplace").decode("ascii")[:1000]


def error_response(
    err: DeltahubError, headers: dict[str, str] | None = None, body: dict[str, str] | None = None
) -> JSONResponse:
    """The response for `err`; `headers` and `body` add to what every error carries."""
    out = {"X-Error-Message": _header_safe(err.message), **(headers or {})}
    if err.error_code is not None:
        out["X-Error-Code"] = err.error_code
    return JSONResponse({"error": err.message, **(body or {})}, status_code=err.status, headers=out)


def plain_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={"X-Error-Message": _header_safe(message)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DeltahubError)
    async def deltahub_error(_: Request, err: DeltahubError) -> JSONResponse:
        if err.status >= 500 and not isinstance(err, NotSupported):
            log.error("request failed: %s", err.message, exc_info=err)
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in err.errors()
        )
        return plain_error(400, f"invalid request: {problems}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return plain_error(err.status_code, str(err.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=err)
        return plain_error(500, "internal server error")
