"""The real upstream with its auth on, once per test session: token mode (tokens made with
its own CLI) and oauth2 mode (RS256 JWTs minted here, verified by the upstream itself
against a JWKS document served from 127.0.0.1)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from proxy.localstack import (
    ProcessGroup,
    Service,
    Stack,
    add_token,
    run_upstream_cli,
    start_redis,
    start_upstream,
)

AUDIENCE = "amp-tests"


@dataclass
class AuthStack:
    """An upstream enforcing auth, and the credentials a test can send it (each a tuple
    of Authorization header values; () sends none)."""

    mode: str
    upstream: Service
    redis_url: str
    stack: Stack
    credentials: dict[str, tuple[str, ...]] = field(default_factory=dict)
    valid: str = ""  # the valid bearer token itself

    def add_token(self, description: str) -> dict[str, Any]:
        return add_token(self.stack, self.redis_url, description)

    def remove_token(self, token_hash: str) -> None:
        out = run_upstream_cli(self.stack, self.redis_url, "token", "remove", token_hash,
                               "--force")
        assert "Token removed successfully" in out, out


def bearer(token: str) -> tuple[str, ...]:
    return (f"Bearer {token}",)


# Credentials every mode refuses the same way, before looking at a token.
MALFORMED = {
    "none": (),
    "empty": ("",),
    "bearer-empty": ("Bearer ",),
    "non-bearer": ("Basic dXNlcjpwYXNzd29yZA==",),
}


def _expired_token(stack: Stack, redis_url: str) -> str:
    """A token whose record is past its expiry but still stored, as the upstream's token
    store holds it (the CLI's expiring tokens vanish with their key's TTL instead, and
    then read as unknown). Hashed with bcrypt's cheapest cost, by the upstream's own bcrypt:
    every check of every token scans this record too."""
    token = "expired-" + uuid.uuid4().hex
    hashed = subprocess.run(
        [str(stack.python), "-c", "import bcrypt,sys; sys.stdout.write(bcrypt.hashpw("
         "sys.argv[1].encode(), bcrypt.gensalt(4)).decode())", token],
        capture_output=True, text=True, check=True).stdout
    record = {"description": "expired", "created_at": "2020-01-01T00:00:00Z",
              "expires_at": "2020-01-02T00:00:00Z", "token_hash": hashed}
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(f"auth_token:{hashed}", json.dumps(record))
        client.sadd("auth_tokens:list", hashed)
    finally:
        client.close()
    return token


@pytest.fixture(scope="session")
def token_stack(stack: Stack, processes: ProcessGroup) -> AuthStack:
    redis_service = start_redis(processes, stack, "token-upstream-redis")
    upstream = start_upstream(processes, stack, redis_service.url, name="token-upstream",
                              extra_env={"DISABLE_AUTH": "false", "AUTH_MODE": "token"})
    valid = add_token(stack, redis_service.url, "valid")
    expired = _expired_token(stack, redis_service.url)
    auth = AuthStack("token", upstream, redis_service.url, stack, valid=valid["token"])
    auth.credentials = {**MALFORMED, "wrong": bearer("not-a-token-" + uuid.uuid4().hex),
                        "expired": bearer(expired),
                        "valid": bearer(valid["token"])}
    return auth


class Jwks:
    """An RS256 key pair, its JWKS document served on 127.0.0.1, and tokens signed by it."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "amp-test-key"
        public = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        document = json.dumps({"keys": [{**public, "kid": self.kid, "alg": "RS256",
                                         "use": "sig"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                self.send_response(200 if self.path.endswith("/jwks.json") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/.well-known/jwks.json"

    def mint(self, lifetime: float = 3600, *, key: Any = None, kid: str | None = None,
             **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": "amp-test-user", "iss": self.issuer, "aud": AUDIENCE, "iat": now,
                   "exp": int(now + lifetime), **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256",
                          headers={"kid": kid or self.kid})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def jwks() -> Iterator[Jwks]:
    server = Jwks()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def oauth_stack(stack: Stack, processes: ProcessGroup, jwks: Jwks) -> AuthStack:
    redis_service = start_redis(processes, stack, "oauth-upstream-redis")
    upstream = start_upstream(processes, stack, redis_service.url, name="oauth-upstream",
                              extra_env={"DISABLE_AUTH": "false", "AUTH_MODE": "oauth2",
                                         "OAUTH2_ISSUER_URL": jwks.issuer,
                                         "OAUTH2_AUDIENCE": AUDIENCE,
                                         "OAUTH2_JWKS_URL": jwks.jwks_url})
    valid = jwks.mint()
    auth = AuthStack("oauth2", upstream, redis_service.url, stack, valid=valid)
    auth.credentials = {
        **MALFORMED,
        "wrong": bearer("not-a-jwt"),
        "bad-signature": bearer(jwks.mint(key=jwks.other_key)),
        "unknown-kid": bearer(jwks.mint(kid="rotated-away")),
        "wrong-audience": bearer(jwks.mint(aud="someone-else")),
        "expired": bearer(jwks.mint(lifetime=-60)),
        "valid": bearer(valid),
    }
    return auth
