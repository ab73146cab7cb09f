"""An OAuth 2.1 resource server: JWT access tokens from the team's identity provider.

The MCP authorization spec makes an MCP server a resource server: it publishes where its
tokens come from (RFC 9728 protected-resource metadata, served by the SDK at
``/.well-known/oauth-protected-resource``), answers 401 with a ``WWW-Authenticate`` header
pointing there, and checks each access token itself. :class:`JwtVerifier` is that check,
behind the SDK's public ``TokenVerifier`` Protocol: the signature against the provider's
published keys (JWKS, by ``kid``), expiry, issuer and audience, with PyJWT. Scopes are
handed to the SDK, which answers 403 ``insufficient_scope`` when a required one is missing.

Keys rotate: a token naming a key not seen yet makes the verifier fetch the JWKS again, at
most once per ``oauth_jwks_refresh_seconds`` (so forged ``kid`` values cannot make the
server hammer the provider); a JWKS file is re-read when it changes. Nothing here logs a
token or a claim value.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from fiml.core.audit import acting_as, audit
from fiml.core.errors import ConfigurationError
from fiml.mcp.auth import ROLE_CLAIM, HashedTokenVerifier

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken

    from fiml.core.config import Settings

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "CombinedVerifier",
    "JwksSource",
    "JwtVerifier",
    "OAuthConfig",
]

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""What a resource server may accept: keys it can only verify with, never sign with (an
HMAC algorithm would let anyone holding the published key mint tokens)."""

LEEWAY_SECONDS = 30
"""Clock skew allowed between the provider and this server on ``exp``, ``nbf`` and ``iat``."""

_MAX_USER_CHARS = 255
logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OAuthConfig:
    """What the verifier checks, from the ``oauth_*`` settings."""

    issuer: str
    audience: str
    jwks_url: str | None
    jwks_file: Path | None
    jwks_refresh_seconds: float
    scopes: tuple[str, ...]
    user_claim: str
    admin_claim: str
    admin_value: str
    algorithms: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> OAuthConfig | None:
        """The configuration, None when OAuth is off; ConfigurationError when incomplete."""
        if settings.oauth_issuer is None:
            return None
        if not settings.oauth_audience:
            raise ConfigurationError("oauth_issuer needs oauth_audience (FIML_OAUTH_AUDIENCE)")
        if (settings.oauth_jwks_url is None) == (settings.oauth_jwks_file is None):
            raise ConfigurationError(
                "oauth_issuer needs exactly one of oauth_jwks_url and oauth_jwks_file"
            )
        unsafe = set(settings.oauth_algorithms) - ASYMMETRIC_ALGORITHMS
        if unsafe or not settings.oauth_algorithms:
            raise ConfigurationError(
                f"oauth_algorithms must be asymmetric signature algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); not {sorted(unsafe)}"
            )
        return cls(
            issuer=settings.oauth_issuer,
            audience=settings.oauth_audience,
            jwks_url=settings.oauth_jwks_url,
            jwks_file=settings.oauth_jwks_file,
            jwks_refresh_seconds=settings.oauth_jwks_refresh_seconds,
            scopes=tuple(settings.oauth_scopes),
            user_claim=settings.oauth_user_claim,
            admin_claim=settings.oauth_admin_claim,
            admin_value=settings.oauth_admin_value,
            algorithms=tuple(settings.oauth_algorithms),
        )


class JwksSource:
    """The provider's signing keys by ``kid``, fetched (or read) again when a token names a
    key not held, at most once per ``refresh_seconds``."""

    def __init__(
        self,
        *,
        url: str | None = None,
        file: Path | None = None,
        refresh_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (url is None) == (file is None):
            raise ConfigurationError("a JWKS source needs exactly one of a URL and a file")
        self.url = url
        self.file = file
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._file_signature: tuple[int, int, int] | None = None

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key named ``kid``, or None when the provider publishes no such key."""
        if self.file is not None and self._file_changed():
            await self._refresh()
        if kid not in self._keys and self._may_refresh():
            await self._refresh()
        return self._keys.get(kid)

    def _may_refresh(self) -> bool:
        if self._loaded_at is None:
            return True
        return self._clock() - self._loaded_at >= self._refresh_seconds

    def _file_changed(self) -> bool:
        assert self.file is not None
        try:
            st = self.file.stat()
        except OSError:
            return False  # keep the keys held: a file being replaced reappears
        return (st.st_ino, st.st_size, st.st_mtime_ns) != self._file_signature

    async def _refresh(self) -> None:
        self._loaded_at = self._clock()
        try:
            document = await self._fetch()
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (OSError, ValueError, httpx.HTTPError, jwt.PyJWTError) as exc:
            # The keys held stay in force: a provider briefly down must not log everyone out.
            logger.error(
                "JWKS not loaded, keeping %d keys: %s: %s",
                len(self._keys),
                type(exc).__name__,
                exc,
                extra={"event": "oauth_jwks_unavailable"},
            )
            return
        self._keys = {k.key_id: k for k in keys if k.key_id}
        logger.info("JWKS loaded: %d keys", len(self._keys), extra={"event": "oauth_jwks_loaded"})

    async def _fetch(self) -> Any:
        if self.file is not None:
            st = self.file.stat()
            self._file_signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            return json.loads(self.file.read_text(encoding="utf-8"))
        assert self.url is not None
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
            response = await client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            return response.json()


class JwtVerifier:
    """The SDK's ``TokenVerifier`` for the provider's JWT access tokens."""

    def __init__(self, config: OAuthConfig, keys: JwksSource | None = None) -> None:
        self.config = config
        self.keys = keys or JwksSource(
            url=config.jwks_url, file=config.jwks_file, refresh_seconds=config.jwks_refresh_seconds
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        """An access token naming the user, role and scopes; None for any token that fails a
        check (the SDK answers 401). The reason is logged, never the token."""
        from mcp.server.auth.provider import AccessToken

        try:
            claims = await self._claims(token)
            user = self._user(claims)
        except (jwt.PyJWTError, _Refused) as exc:
            logger.info(
                "access token refused: %s",
                type(exc).__name__ if not isinstance(exc, _Refused) else exc,
                extra={"event": "oauth_token_refused"},
            )
            return None
        scopes = _scopes(claims)
        roles = _values(claims.get(self.config.admin_claim))
        role = "admin" if self.config.admin_value in roles else "user"
        client = claims.get("azp") or claims.get("client_id")
        return AccessToken(
            token=token,
            client_id=client if isinstance(client, str) else user,
            scopes=scopes,
            expires_at=int(claims["exp"]),
            subject=user,
            claims={ROLE_CLAIM: role},
        )

    async def _claims(self, token: str) -> dict[str, Any]:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _Refused("no key id (kid) in the token's header")
        if header.get("alg") not in self.config.algorithms:
            raise _Refused("algorithm not accepted")
        key = await self.keys.key(kid)
        if key is None:
            raise _Refused("signed with a key the provider does not publish")
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=list(self.config.algorithms),
            audience=self.config.audience,
            issuer=self.config.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
        return claims

    def _user(self, claims: dict[str, Any]) -> str:
        user = claims.get(self.config.user_claim)
        if not isinstance(user, str) or not user.strip() or len(user) > _MAX_USER_CHARS:
            raise _Refused(f"claim {self.config.user_claim!r} names no user")
        return user.strip()


class _Refused(Exception):
    """A token that decodes but cannot be accepted, with the reason to log."""


def _values(claim: Any) -> list[str]:
    if isinstance(claim, str):
        return claim.split()
    if isinstance(claim, list):
        return [v for v in claim if isinstance(v, str)]
    return []


def _scopes(claims: dict[str, Any]) -> list[str]:
    # RFC 8693/9068: "scope" is a space-separated string; some providers send "scp" as a list.
    return _values(claims.get("scope")) or _values(claims.get("scp"))


class CombinedVerifier:
    """Bearer tokens from the token file or from the identity provider, told apart by
    shape: a JWT has three dot-separated parts, a file token (URL-safe base64) has none."""

    def __init__(self, tokens: HashedTokenVerifier | None, oauth: JwtVerifier | None) -> None:
        if tokens is None and oauth is None:
            raise ConfigurationError("the HTTP transport needs a token file or OAuth settings")
        self.tokens = tokens
        self.oauth = oauth

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's access, from whichever source issues tokens of its shape; a refused
        token is on the audit trail (its kind, never the token)."""
        kind = "jwt" if token.count(".") == 2 else "file"
        source = self.oauth if kind == "jwt" else self.tokens
        access = None if source is None else await source.verify_token(token)
        if access is None:
            with acting_as(None):
                audit("auth_refused", outcome="refused", token_kind=kind)
        return access
