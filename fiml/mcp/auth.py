"""Who is calling: bearer tokens over HTTP, the local user over stdio.

The caller's identity always comes from the transport, never from a tool argument. Over
HTTP a token file maps the SHA-256 hash of each bearer token to a user and a role; the
tokens themselves are never stored. Its format::

    {"tokens": [{"user": "alice", "role": "user", "sha256": "<64 hex digits>"}]}

Over stdio the caller is ``FIML_USER`` (the ``user`` setting), else the OS user.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from fiml.core.errors import AuthenticationError, ConfigurationError

# The MCP SDK loads when a token is verified, not with this module: ``fiml sessions`` asks
# local_identity who the local user is, and starts without the SDK.
if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken

    from fiml.core.config import Settings

__all__ = [
    "ROLE_CLAIM",
    "BearerTokenIdentity",
    "HashedTokenVerifier",
    "Identity",
    "IdentityResolver",
    "Role",
    "StaticIdentity",
    "TokenEntry",
    "TokenFile",
    "TokenSource",
    "hash_token",
    "local_identity",
]

Role = Literal["user", "admin"]
"""What a caller may do: ``admin`` may also read analytics across users."""

_ROLES: tuple[str, ...] = get_args(Role)
ROLE_CLAIM = "fiml_role"
"""Where an access token's claims carry the caller's role, whichever verifier made it."""
_MAX_USER_CHARS = 255


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller: the user its sessions belong to, and its role."""

    user_id: str
    role: Role = "user"

    @property
    def is_admin(self) -> bool:
        """True for the ``admin`` role."""
        return self.role == "admin"


class IdentityResolver(Protocol):
    """Tells the tools who is making the current request."""

    def current(self) -> Identity:
        """The caller of the request being handled; AuthenticationError if unknown."""
        ...


class StaticIdentity:
    """One caller for every request: the stdio transport, where the local user is the caller."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    def current(self) -> Identity:
        """The fixed identity."""
        return self.identity


class BearerTokenIdentity:
    """The caller whose bearer token the HTTP transport verified for this request."""

    def current(self) -> Identity:
        """The verified token's user and role; AuthenticationError without one."""
        from mcp.server.auth.middleware.auth_context import get_access_token

        token = get_access_token()
        if token is None or token.subject is None:
            raise AuthenticationError("no valid bearer token was presented")
        role = (token.claims or {}).get(ROLE_CLAIM, "user")
        return Identity(user_id=token.subject, role="admin" if role == "admin" else "user")


def local_identity(settings: Settings) -> Identity:
    """The stdio caller: the ``user`` setting (``FIML_USER``), else the OS user."""
    user = (settings.user or "").strip()
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError) as exc:
            raise ConfigurationError("cannot tell who the local user is; set FIML_USER") from exc
    return Identity(user_id=_checked_user(user))


def hash_token(token: str) -> str:
    """The hex SHA-256 of a bearer token, as the token file stores it."""
    return hashlib.sha256(token.encode()).hexdigest()


def _checked_user(user: Any) -> str:
    if not isinstance(user, str) or not user.strip() or len(user) > _MAX_USER_CHARS:
        raise ConfigurationError(f"a user must be a string of 1-{_MAX_USER_CHARS} characters")
    return user.strip()


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One token in the token file: its hash, its user and its role."""

    user_id: str
    role: Role
    sha256: str

    @classmethod
    def parse(cls, raw: Any, position: int) -> TokenEntry:
        """An entry from the file's JSON; ConfigurationError naming the entry if malformed."""
        if not isinstance(raw, dict):
            raise ConfigurationError(f"token entry {position} is not an object")
        digest = raw.get("sha256")
        role = raw.get("role", "user")
        if not isinstance(digest, str) or len(digest) != 64:
            raise ConfigurationError(f"token entry {position} needs a 64-digit hex 'sha256'")
        try:
            bytes.fromhex(digest)
        except ValueError:
            raise ConfigurationError(f"token entry {position}: 'sha256' is not hex") from None
        if role not in _ROLES:
            raise ConfigurationError(f"token entry {position}: role must be one of {_ROLES}")
        return cls(user_id=_checked_user(raw.get("user")), role=role, sha256=digest.lower())

    def to_json(self) -> dict[str, str]:
        """The entry as the file stores it."""
        return {"user": self.user_id, "role": self.role, "sha256": self.sha256}


class TokenFile:
    """The token file: SHA-256 hashes of bearer tokens, each mapped to a user and a role."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, path: Path) -> TokenFile:
        """Read a token file; ConfigurationError if it is missing or malformed."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"token file {path} does not exist") from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise ConfigurationError(f"token file {path} cannot be read: {exc}") from None
        raw = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise ConfigurationError(f"token file {path} must hold {{'tokens': [...]}}")
        return cls([TokenEntry.parse(item, i) for i, item in enumerate(raw)])

    @classmethod
    def load_or_empty(cls, path: Path) -> TokenFile:
        """Read a token file, or start an empty one if it does not exist yet."""
        return cls.load(path) if path.exists() else cls([])

    def save(self, path: Path) -> None:
        """Write the file (owner read/write only), replacing it atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"tokens": [e.to_json() for e in self.entries]}, indent=2)
        # mkstemp: a name of its own (two writers never share a temporary file), mode 0600.
        # Running servers see the new file whole, never a half-written one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(body + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add_token(self, user_id: str, role: Role = "user") -> str:
        """Create a new random token for ``user_id``; returns it (only its hash is kept)."""
        if role not in _ROLES:
            raise ConfigurationError(f"role must be one of {_ROLES}")
        token = secrets.token_urlsafe(32)
        self.entries.append(TokenEntry(_checked_user(user_id), role, hash_token(token)))
        return token

    def current(self) -> TokenFile:
        """Itself: a file read once is its own :class:`TokenSource`."""
        return self

    def match(self, token: str) -> TokenEntry | None:
        """The entry whose hash matches ``token``, compared in constant time, or None."""
        presented = hash_token(token).encode()
        found: TokenEntry | None = None
        # Compare against every entry so the time taken does not depend on which one matches.
        for entry in self.entries:
            if hmac.compare_digest(presented, entry.sha256.encode()):
                found = entry
        return found


class TokenSource(Protocol):
    """Where a verifier finds the tokens in force: a :class:`TokenFile` read once, or a file
    followed live (:class:`fiml.mcp.token_watch.WatchedTokenFile`)."""

    def current(self) -> TokenFile:
        """The tokens in force now."""
        ...


class HashedTokenVerifier:
    """The SDK's token verifier (its ``TokenVerifier`` Protocol) over a :class:`TokenSource`."""

    def __init__(self, tokens: TokenSource, *, scopes: Sequence[str] = ()) -> None:
        self.tokens = tokens
        self.scopes = list(scopes)
        """What a file token may do where scopes are required (the OAuth settings'
        scopes): everything, since whoever holds one was given it by the operator."""

    async def verify_token(self, token: str) -> AccessToken | None:
        """An access token naming the user and role, or None for an unknown token."""
        from mcp.server.auth.provider import AccessToken

        entry = self.tokens.current().match(token)
        if entry is None:
            return None
        return AccessToken(
            token=token,
            client_id=entry.user_id,
            scopes=list(self.scopes),
            subject=entry.user_id,
            claims={ROLE_CLAIM: entry.role},
        )
