"""Who is looking at a page: the token kept in an HttpOnly cookie, and CSRF protection for forms.

The token is checked by the same token store as a bearer header, and what it may see is decided by the
same policy (service/policy.py). The cookie is HttpOnly (page scripts cannot read
it), SameSite=Strict (other sites' pages do not send it) and Secure when the page was served over HTTPS.

Forms that change state carry a CSRF token: a random value in its own cookie, repeated in a hidden field
(double submit), compared in constant time; the Origin header, when the browser sends one, must be ours.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs, urlsplit

from fastapi import Request, Response

from service.auth import TokenInfo, TokenStore
from service.errors import Forbidden

SESSION_COOKIE = "deltahub_session"
CSRF_COOKIE = "deltahub_csrf"
CSRF_FIELD = "csrf_token"
# A browser session, not a device login: a day, then sign in again.
SESSION_SECONDS = 24 * 3600


def page_caller(request: Request, tokens: TokenStore) -> TokenInfo | None:
    """The signed-in caller, or None (anonymous, or a cookie whose token was revoked)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    caller = tokens.verify(token)
    if caller is not None:
        request.state.caller = caller.name  # for the request log, never the token
    return caller


def csrf_token(request: Request) -> str:
    """This browser's CSRF token: the cookie's, or a new one `remember_csrf` will set."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) >= 32:
        return existing
    token: str | None = getattr(request.state, "new_csrf", None)
    if token is None:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def remember_csrf(request: Request, response: Response) -> None:
    token = getattr(request.state, "new_csrf", None)
    if token is not None:
        response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_https(request), path="/")


async def checked_form(request: Request) -> dict[str, str]:
    """The posted form's fields, after the CSRF check; Forbidden when it fails."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden(detail="cross-site form submission refused")
    body = (await request.body()).decode("utf-8", "replace")
    fields = {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = fields.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise Forbidden(detail="missing or wrong CSRF token: reload the page and try again")
    return fields


def sign_in(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=_https(request), path="/")


def sign_out(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def _https(request: Request) -> bool:
    return request.url.scheme == "https"
