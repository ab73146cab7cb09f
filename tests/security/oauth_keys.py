"""Signing keys, JWKS documents and access tokens the OAuth tests make for themselves."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.example.test/"
AUDIENCE = "https://fiml.example.test/mcp"


@dataclass
class SigningKey:
    """A provider's key: its id, its private half, and its published JWK."""

    kid: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    algorithm: str

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")

    def jwk(self) -> dict[str, Any]:
        if isinstance(self.private, rsa.RSAPrivateKey):
            published = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            published = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**published, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def token(self, **overrides: Any) -> str:
        """An access token signed with this key; ``overrides`` replace or (None) drop claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "erin",
            "scope": "fiml openid",
            "iat": now,
            "exp": now + 300,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(
            claims,
            self.private,
            algorithm=self.algorithm,
            headers={"kid": self.kid},
        )


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk() for k in keys]}


def write_jwks(path: Path, *keys: SigningKey) -> Path:
    """Replace the JWKS file at once, as a key rotation by an operator would."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(json.dumps(jwks(*keys)), encoding="utf-8")
    temporary.replace(path)
    return path


@dataclass
class JwksServer:
    """A provider's JWKS endpoint on loopback: what it publishes, and how often it was asked."""

    url: str
    document: dict[str, Any]
    fetches: int = 0
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def jwks_server(*keys: SigningKey) -> Iterator[JwksServer]:
    """Serve ``jwks(*keys)`` at ``/jwks`` until the block ends (``down``: answer 503)."""
    state = JwksServer(url="", document=jwks(*keys))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.fetches += 1
                body = json.dumps(state.document).encode()
                down = state.down
            self.send_response(503 if down else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads the counts."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
