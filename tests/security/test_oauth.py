"""The OAuth 2.1 resource server: every check an access token must pass, key rotation, and
the protected-resource metadata of a real ``fiml serve --http``.

Keys and tokens are made by the test (tests/security/oauth_keys.py); the provider's JWKS
is a file, or an endpoint on loopback that counts how often it is asked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.utils import base64url_encode

from fiml.core.config import Settings
from fiml.core.errors import ConfigurationError
from fiml.mcp import HashedTokenVerifier, TokenFile
from fiml.mcp.oauth import CombinedVerifier, JwksSource, JwtVerifier, OAuthConfig
from tests.mcp.conftest import ok
from tests.mcp.live_servers import ACCEPT, INITIALIZE, http_client, http_server, write_tokens
from tests.security.oauth_keys import (
    AUDIENCE,
    ISSUER,
    SigningKey,
    jwks,
    jwks_server,
    write_jwks,
)

TIMEOUT = 120


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.rsa("key-1")


@pytest.fixture(scope="module")
def other() -> SigningKey:
    return SigningKey.rsa("key-2")


def config(**settings: Any) -> OAuthConfig:
    values: dict[str, Any] = {
        "oauth_issuer": ISSUER,
        "oauth_audience": AUDIENCE,
        "oauth_jwks_file": Path("unused.json"),
    }
    values.update(settings)
    made = OAuthConfig.from_settings(Settings(**values))
    assert made is not None
    return made


def verifier_on_file(path: Path, **settings: Any) -> JwtVerifier:
    return JwtVerifier(config(oauth_jwks_file=path, **settings))


async def test_a_valid_token_names_its_user_role_and_scopes(
    tmp_path: Path, key: SigningKey
) -> None:
    verifier = verifier_on_file(write_jwks(tmp_path / "jwks.json", key))

    user = await verifier.verify_token(key.token())
    admin = await verifier.verify_token(key.token(sub="root", roles=["fiml-admin", "x"]))

    assert user is not None and admin is not None
    assert (user.subject, user.claims, user.scopes) == (
        "erin",
        {"fiml_role": "user"},
        ["fiml", "openid"],
    )
    assert (admin.subject, admin.claims) == ("root", {"fiml_role": "admin"})
    assert user.expires_at is not None and user.expires_at > time.time()


async def test_other_claims_can_name_the_user_and_the_admin_role(
    tmp_path: Path, key: SigningKey
) -> None:
    verifier = verifier_on_file(
        write_jwks(tmp_path / "jwks.json", key),
        oauth_user_claim="email",
        oauth_admin_claim="groups",
        oauth_admin_value="ops",
    )

    access = await verifier.verify_token(key.token(email="ops@example.test", groups="dev ops"))

    assert access is not None
    assert (access.subject, access.claims) == ("ops@example.test", {"fiml_role": "admin"})


def _expired(k: SigningKey, o: SigningKey) -> str:
    now = int(time.time())
    return k.token(iat=now - 3600, exp=now - 120)  # past the 30 s leeway


REFUSED: dict[str, Callable[[SigningKey, SigningKey], str]] = {
    "expired": _expired,
    "not yet valid": lambda k, o: k.token(nbf=int(time.time()) + 600),
    "wrong audience": lambda k, o: k.token(aud="https://elsewhere.test/mcp"),
    "no audience": lambda k, o: k.token(aud=None),
    "wrong issuer": lambda k, o: k.token(iss="https://evil.test/"),
    "no expiry": lambda k, o: k.token(exp=None),
    "bad signature": lambda k, o: SigningKey(k.kid, o.private, "RS256").token(),
    "unknown key": lambda k, o: o.token(),
    "no user": lambda k, o: k.token(sub=None),
    "blank user": lambda k, o: k.token(sub="  "),
    "user not a string": lambda k, o: k.token(sub=42),
    "alg none": lambda k, o: jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
        "",
        algorithm="none",
        headers={"kid": k.kid},
    ),
    "no kid": lambda k, o: jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
        k.private,
        algorithm="RS256",
    ),
    "garbage": lambda k, o: "not.a.jwt",
    "tampered payload": lambda k, o: _tampered(k.token()),
}


def _tampered(token: str) -> str:
    header, _, signature = token.split(".")
    forged = base64url_encode(b'{"iss":"x","sub":"root","roles":["fiml-admin"]}')
    return f"{header}.{forged.decode()}.{signature}"


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_a_token_failing_any_check_is_refused_and_never_logged(
    tmp_path: Path,
    key: SigningKey,
    other: SigningKey,
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = verifier_on_file(write_jwks(tmp_path / "jwks.json", key))
    token = REFUSED[case](key, other)

    with caplog.at_level(logging.DEBUG):
        assert await verifier.verify_token(token) is None

    assert token not in caplog.text
    signature = token.split(".")[-1]
    assert not signature or signature not in caplog.text


async def test_an_hmac_token_signed_with_the_public_key_is_refused(
    tmp_path: Path, key: SigningKey
) -> None:
    # The classic confusion attack: HS256 keyed with the published RSA key's PEM, made by
    # hand (PyJWT itself refuses to use a PEM key as an HMAC secret).
    verifier = verifier_on_file(write_jwks(tmp_path / "jwks.json", key))
    pem = key.private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "root", "exp": int(time.time()) + 60}
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signed = b".".join(base64url_encode(json.dumps(part).encode()) for part in (header, claims))
    signature = base64url_encode(hmac.new(pem, signed, hashlib.sha256).digest())
    token = (signed + b"." + signature).decode()

    assert await verifier.verify_token(token) is None


async def test_a_missing_scope_reaches_the_sdk_as_a_missing_scope(
    tmp_path: Path, key: SigningKey
) -> None:
    # The SDK's RequireAuthMiddleware answers 403 insufficient_scope (the live test checks).
    verifier = verifier_on_file(write_jwks(tmp_path / "jwks.json", key))

    access = await verifier.verify_token(key.token(scope="openid"))

    assert access is not None and "fiml" not in access.scopes


async def test_a_key_rotated_in_the_file_takes_over(
    tmp_path: Path, key: SigningKey, other: SigningKey
) -> None:
    path = write_jwks(tmp_path / "jwks.json", key)
    verifier = verifier_on_file(path)
    assert await verifier.verify_token(key.token()) is not None

    write_jwks(path, key, other)  # the new key is published beside the old one
    assert await verifier.verify_token(other.token()) is not None
    write_jwks(path, other)  # then the old one is withdrawn
    assert await verifier.verify_token(key.token()) is None
    assert await verifier.verify_token(other.token()) is not None


async def test_the_jwks_url_is_fetched_again_for_a_new_key_at_most_once_per_interval(
    key: SigningKey, other: SigningKey
) -> None:
    ticks = Ticks()
    with jwks_server(key) as provider:
        cfg = config(oauth_jwks_url=provider.url, oauth_jwks_file=None)
        keys = JwksSource(url=provider.url, refresh_seconds=60, clock=ticks)
        verifier = JwtVerifier(cfg, keys)

        assert await verifier.verify_token(key.token()) is not None
        assert provider.fetches == 1
        for _ in range(20):  # forged key ids do not make the server hammer the provider
            assert await verifier.verify_token(other.token()) is None
        assert provider.fetches == 1

        provider.document = jwks(key, other)  # rotation at the provider
        ticks.now += 60
        assert await verifier.verify_token(other.token()) is not None
        assert provider.fetches == 2
        assert await verifier.verify_token(key.token()) is not None
        assert provider.fetches == 2


async def test_a_provider_down_keeps_the_keys_held_and_logs_it(
    key: SigningKey, other: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()
    with jwks_server(key) as provider:
        verifier = JwtVerifier(
            config(oauth_jwks_url=provider.url, oauth_jwks_file=None),
            JwksSource(url=provider.url, refresh_seconds=60, clock=ticks),
        )
        assert await verifier.verify_token(key.token()) is not None

        provider.down = True
        ticks.now += 60
        with caplog.at_level(logging.ERROR, logger="fiml.mcp.oauth"):
            assert await verifier.verify_token(other.token()) is None  # asks, gets 503
        assert await verifier.verify_token(key.token()) is not None  # the held key still works

        assert [getattr(r, "event", None) for r in caplog.records] == ["oauth_jwks_unavailable"]
        provider.down = False
        provider.document = jwks(key, other)
        ticks.now += 60
        assert await verifier.verify_token(other.token()) is not None


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"oauth_audience": None}, "oauth_audience"),
        ({"oauth_jwks_file": None}, "exactly one"),
        ({"oauth_jwks_url": "https://idp.example.test/jwks"}, "exactly one"),
        ({"oauth_algorithms": ["RS256", "HS256"]}, "asymmetric"),
        ({"oauth_algorithms": []}, "asymmetric"),
    ],
)
def test_incomplete_or_unsafe_settings_are_refused(
    settings: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        config(**settings)


def test_without_an_issuer_oauth_is_off() -> None:
    assert OAuthConfig.from_settings(Settings()) is None


async def test_tokens_of_each_shape_go_to_their_own_source(tmp_path: Path, key: SigningKey) -> None:
    file = TokenFile([])
    alice = file.add_token("alice")
    combined = CombinedVerifier(
        HashedTokenVerifier(file, scopes=["fiml"]),
        verifier_on_file(write_jwks(tmp_path / "jwks.json", key)),
    )
    only_file = CombinedVerifier(HashedTokenVerifier(file), None)

    from_file = await combined.verify_token(alice)
    from_idp = await combined.verify_token(key.token())

    assert from_file is not None and (from_file.subject, from_file.scopes) == ("alice", ["fiml"])
    assert from_idp is not None and from_idp.subject == "erin"
    assert await only_file.verify_token(key.token()) is None
    with pytest.raises(ConfigurationError):
        CombinedVerifier(None, None)


async def test_a_served_resource_server_publishes_metadata_and_checks_tokens(
    tmp_path: Path, key: SigningKey
) -> None:
    tokens = write_tokens(tmp_path / "tokens.json", alice="user")
    jwks_file = write_jwks(tmp_path / "jwks.json", key)
    env = {
        "FIML_OAUTH_ISSUER": ISSUER,
        "FIML_OAUTH_AUDIENCE": AUDIENCE,
        "FIML_OAUTH_JWKS_FILE": str(jwks_file),
    }

    async def status(http: httpx.AsyncClient, url: str, token: str) -> int:
        headers = {**ACCEPT, "Authorization": f"Bearer {token}"}
        return (await http.post(url, json=INITIALIZE, headers=headers)).status_code

    with anyio.fail_after(TIMEOUT):
        async with (
            http_server(tmp_path, tmp_path / "tokens.json", stateless=True, env=env) as server,
            httpx.AsyncClient(timeout=30) as http,
        ):
            origin = server.url.removesuffix("/mcp")
            metadata = (await http.get(f"{origin}/.well-known/oauth-protected-resource/mcp")).json()
            anonymous = await http.post(server.url, json=INITIALIZE, headers=ACCEPT)

            assert metadata["resource"] == server.url
            assert metadata["authorization_servers"] == [ISSUER]
            assert metadata["scopes_supported"] == ["fiml"]
            assert anonymous.status_code == 401
            assert (
                f'resource_metadata="{origin}/.well-known/oauth-protected-resource/mcp"'
                in anonymous.headers["www-authenticate"]
            )
            assert await status(http, server.url, key.token()) == 200
            assert await status(http, server.url, tokens["alice"]) == 200
            assert await status(http, server.url, key.token(scope="openid")) == 403
            assert await status(http, server.url, _expired(key, key)) == 401
            assert await status(http, server.url, key.token(aud="https://elsewhere.test")) == 401

            # The provider's user is a user like any other: their sessions are their own.
            async with http_client(server.url, key.token(sub="erin")) as erin:
                created = await ok(
                    erin, "create-analysis-session", assets=["AAPL"], session_type="equity"
                )
            async with http_client(server.url, tokens["alice"]) as alice:
                listed = await ok(alice, "list-sessions")
            assert created["session_id"] not in str(listed)
    assert key.token() not in server.log.decode(errors="replace")
