"""Tokens and read capabilities: pure functions, HMAC-SHA256 with the cluster secret.

The cluster secret is 32 random bytes kept hex-encoded in a file readable by
its owner only (``<home>/cluster-secret``); master and workers read it with
``--cluster-secret-file``. Nothing here talks to the network.

* A **token** proves which namespace a client acts for:
  ``base64url(payload) + "." + base64url(hmac)`` with payload
  ``{"ns": ..., "exp": unix seconds, "v": 1}``. Two namespaces are special:
  :data:`SYSTEM_NAMESPACE` (workers talking to the master: the only one that
  may ask for mount credentials) and :data:`ADMIN_NAMESPACE` (whoever holds
  the secret file: sees every namespace, never credentials).
* A **capability** lets one namespace read some mounts for a while: payload
  ``{"ns": ..., "mounts": {mount_id: prefix}, "exp": ..., "v": 1}``. A worker
  serves a block only when the capability's signature holds, it has not
  expired, the block's mount is in it and the block's path is under the
  mount's prefix (a subpath reference reads only its subtree).

Tokens and capabilities are signed under different labels, so one can never
be passed off as the other. Signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cachecluster.common.errors import ConfigError, PermissionDenied

SECRET_FILE = "cluster-secret"
"""Name of the secret file in a local cluster's home."""
SECRET_BYTES = 32
FORMAT_VERSION = 1
SYSTEM_NAMESPACE = "*system*"
"""The namespace of workers' tokens: membership calls and ``GetMount``."""
ADMIN_NAMESPACE = "*admin*"
"""The namespace of the secret holder's tokens: every namespace, no credentials."""
DEFAULT_TOKEN_TTL = 24 * 3600.0
DEFAULT_CAPABILITY_TTL = 600.0
"""Seconds a capability is valid; clients ask again shortly before the end."""

_TOKEN_LABEL = b"cachecluster-token\0"
_CAP_LABEL = b"cachecluster-capability\0"


# ---------------------------------------------------------------- the secret


def parse_secret(text: str, where: str = "--cluster-secret-file") -> bytes:
    """The secret bytes of a secret file's text (hex, surrounding blanks ignored)."""
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        raise ConfigError(where, "the cluster secret is not hex") from None
    if len(secret) < 16:
        raise ConfigError(where, f"the cluster secret has {len(secret)} bytes; at least 16 needed")
    return secret


def load_secret(path: str | Path) -> bytes:
    """Read a secret file; a missing or malformed file is a ``ConfigError`` naming it."""
    where = f"--cluster-secret-file {path}"
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(where, f"cannot read the cluster secret: {exc}") from None
    return parse_secret(text, where)


def create_secret_file(path: str | Path) -> bytes:
    """Create ``path`` (mode 0600) with a new random secret unless it exists; return the secret."""
    path = Path(path)
    if path.exists():
        return load_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secret.hex() + "\n")
    return secret


# ---------------------------------------------------------------- encoding


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, label: bytes, payload: Mapping[str, Any]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    mac = hmac.new(secret, label + body, hashlib.sha256).digest()
    return f"{_b64(body)}.{_b64(mac)}"


def _open(secret: bytes, label: bytes, text: str, what: str, now: float | None) -> dict[str, Any]:
    """The payload of a signed string, after checking signature, version and expiry."""
    body_text, dot, mac_text = text.partition(".")
    try:
        if not dot:
            raise ValueError("no '.'")
        body = _unb64(body_text)
        mac = _unb64(mac_text)
    except (ValueError, binascii.Error):
        raise PermissionDenied(f"{what} is malformed") from None
    expected = hmac.new(secret, label + body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise PermissionDenied(f"{what} has a bad signature")
    try:
        payload = json.loads(body)
    except ValueError:
        raise PermissionDenied(f"{what} is malformed") from None
    if not isinstance(payload, dict) or payload.get("v") != FORMAT_VERSION:
        raise PermissionDenied(f"{what} has an unknown format version")
    exp = payload.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise PermissionDenied(f"{what} has no expiry")
    if (time.time() if now is None else now) >= exp:
        raise PermissionDenied(f"{what} expired")
    return payload


# ---------------------------------------------------------------- tokens


def issue_token(
    secret: bytes, namespace: str, ttl: float = DEFAULT_TOKEN_TTL, *, now: float | None = None
) -> str:
    """A token for ``namespace`` valid ``ttl`` seconds."""
    if not namespace:
        raise ConfigError("namespace", "a token needs a namespace")
    if ttl <= 0:
        raise ConfigError("--ttl", f"{ttl!r} must be a positive number of seconds")
    exp = int((time.time() if now is None else now) + ttl)
    return _sign(secret, _TOKEN_LABEL, {"ns": namespace, "exp": exp, "v": FORMAT_VERSION})


def verify_token(secret: bytes, token: str, *, now: float | None = None) -> str:
    """The namespace of a valid token; ``PermissionDenied`` for a forged or expired one."""
    payload = _open(secret, _TOKEN_LABEL, token, "token", now)
    namespace = payload.get("ns")
    if not isinstance(namespace, str) or not namespace:
        raise PermissionDenied("token names no namespace")
    return namespace


def bearer(token: str) -> tuple[str, str]:
    """The gRPC metadata pair that carries ``token``."""
    return ("authorization", f"Bearer {token}")


def token_from_metadata(metadata: Any) -> str | None:
    """The bearer token of gRPC invocation metadata, or ``None``."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


# ---------------------------------------------------------------- capabilities


def path_under(path: str, prefix: str) -> bool:
    """True when normalised ``path`` is ``prefix`` or below it (``""`` is everything)."""
    return not prefix or path == prefix or path.startswith(prefix + "/")


@dataclasses.dataclass(frozen=True, slots=True)
class Capability:
    """A verified read capability: namespace, readable mounts with their prefixes, expiry."""

    namespace: str
    mounts: Mapping[str, str]
    expires: float

    def check(self, mount_id: str, path: str) -> None:
        """Refuse (``PermissionDenied``) reading ``path`` of ``mount_id`` outside the capability."""
        prefix = self.mounts.get(mount_id)
        if prefix is None:
            raise PermissionDenied(f"the capability does not cover mount {mount_id}")
        if not path_under(path, prefix):
            raise PermissionDenied(
                f"path {path!r} of mount {mount_id} is outside the capability's {prefix!r}"
            )


def issue_capability(
    secret: bytes,
    namespace: str,
    mounts: Mapping[str, str],
    ttl: float = DEFAULT_CAPABILITY_TTL,
    *,
    now: float | None = None,
) -> tuple[bytes, float]:
    """A capability for ``namespace`` to read ``mounts`` (mount id -> prefix) and its expiry."""
    exp = int((time.time() if now is None else now) + ttl)
    payload = {"ns": namespace, "mounts": dict(mounts), "exp": exp, "v": FORMAT_VERSION}
    return _sign(secret, _CAP_LABEL, payload).encode("ascii"), float(exp)


def verify_capability(secret: bytes, cap: bytes | None, *, now: float | None = None) -> Capability:
    """The capability ``cap`` after checking it; ``PermissionDenied`` when absent or invalid."""
    if not cap:
        raise PermissionDenied("a read capability is required (ask the master for one)")
    try:
        text = cap.decode("ascii")
    except UnicodeDecodeError:
        raise PermissionDenied("capability is malformed") from None
    payload = _open(secret, _CAP_LABEL, text, "capability", now)
    mounts = payload.get("mounts")
    namespace = payload.get("ns")
    if (
        not isinstance(mounts, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in mounts.items())
        or not isinstance(namespace, str)
    ):
        raise PermissionDenied("capability is malformed")
    return Capability(namespace, mounts, float(payload["exp"]))
