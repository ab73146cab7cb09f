"""Who may see the dashboard: admins who logged in with their token, held in a signed cookie.

The token is typed into a form and POSTed, never put in a URL. A good admin token earns a
session cookie: ``<payload>.<signature>``, the payload naming the user, when the session
ends, a random session id and a fingerprint of the token's hash; the signature is an
HMAC-SHA256 under a secret drawn at random when the process starts. The cookie is
HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), scoped to
the dashboard's path, Secure over HTTPS, and expires after :data:`SESSION_SECONDS`.

Every request checks the token file in force again (through its fingerprint), so a token
revoked or demoted from admin ends its dashboard sessions at once. Logging out ends the
session on the server too, not only in the browser.

Forms carry a CSRF token derived from a random cookie of their own (a signed double
submit): a page on another site can neither read that cookie nor compute the token. A
login from another origin is refused by its ``Origin`` header as well.

The secret lives in the process, so each process of a multi-process deployment has its own
sessions: put the dashboard behind sticky sessions, or log in again on another process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "DashboardSession",
    "SessionSigner",
    "TokenEntryLike",
    "TokenFileLike",
    "TokenSourceLike",
]

SESSION_COOKIE = "fiml_dashboard"
CSRF_COOKIE = "fiml_dashboard_csrf"
SESSION_SECONDS = 30 * 60
"""How long a dashboard login lasts: a short while, as for any admin console."""


class TokenEntryLike(Protocol):
    """What the dashboard reads of a token file entry (:class:`fiml.mcp.auth.TokenEntry`)."""

    @property
    def user_id(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def sha256(self) -> str: ...


class TokenFileLike(Protocol):
    """The tokens in force (:class:`fiml.mcp.auth.TokenFile`)."""

    def match(self, token: str) -> TokenEntryLike | None:
        """The entry of ``token``, or None."""
        ...

    @property
    def entries(self) -> Sequence[TokenEntryLike]: ...


class TokenSourceLike(Protocol):
    """Where the tokens in force come from (:class:`fiml.mcp.auth.TokenSource`)."""

    def current(self) -> TokenFileLike:
        """The tokens in force now."""
        ...


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """A logged-in admin: who, until when (epoch seconds), and the session's id."""

    user_id: str
    expires: float
    session_id: str
    fingerprint: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session cookies and CSRF tokens under one per-process secret."""

    def __init__(
        self,
        *,
        lifetime_seconds: float = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secrets.token_bytes(32)
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._ended: dict[str, float] = {}  # logged-out session id -> its expiry

    def _sign(self, purpose: str, data: str) -> str:
        mac = hmac.new(self._secret, f"{purpose}\x00{data}".encode(), hashlib.sha256)
        return _b64(mac.digest())

    def fingerprint(self, token_sha256: str) -> str:
        """A keyed digest of a token's hash: names the token without revealing the hash."""
        return self._sign("token", token_sha256)[:22]

    def issue(self, entry: TokenEntryLike) -> str:
        """A session cookie value for the admin of ``entry``."""
        payload = {
            "u": entry.user_id,
            "e": self._clock() + self.lifetime_seconds,
            "s": secrets.token_urlsafe(16),
            "f": self.fingerprint(entry.sha256),
        }
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign('session', body)}"

    def read(self, cookie: str | None, tokens: TokenFileLike) -> DashboardSession | None:
        """The session of a cookie, or None when it is missing, forged, expired, logged
        out, or its token is no longer an admin's in ``tokens``."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign("session", body)):
            return None
        try:
            raw = json.loads(_unb64(body))
            session = DashboardSession(
                user_id=str(raw["u"]),
                expires=float(raw["e"]),
                session_id=str(raw["s"]),
                fingerprint=str(raw["f"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= self._clock() or session.session_id in self._ended:
            return None
        still_admin = any(
            entry.role == "admin"
            and entry.user_id == session.user_id
            and hmac.compare_digest(self.fingerprint(entry.sha256), session.fingerprint)
            for entry in tokens.entries
        )
        return session if still_admin else None

    def end(self, session: DashboardSession) -> None:
        """Log ``session`` out: its cookie is refused from now on, wherever it is kept."""
        now = self._clock()
        self._ended = {sid: until for sid, until in self._ended.items() if until > now}
        self._ended[session.session_id] = session.expires

    def csrf_token(self, csrf_cookie: str) -> str:
        """The form token that goes with a CSRF cookie."""
        return self._sign("csrf", csrf_cookie)

    def csrf_ok(self, csrf_cookie: str | None, submitted: str | None) -> bool:
        """Whether a form's token matches the CSRF cookie sent along with it."""
        if not csrf_cookie or not submitted:
            return False
        return hmac.compare_digest(self.csrf_token(csrf_cookie), submitted)
