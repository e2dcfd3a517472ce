"""Unit tests of tokens and capabilities (cachecluster.common.auth)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cachecluster.common import auth
from cachecluster.common.errors import ConfigError, PermissionDenied

SECRET = bytes(range(32))
OTHER = bytes(range(1, 33))
NOW = 1_800_000_000.0


def test_token_round_trip_and_expiry() -> None:
    token = auth.issue_token(SECRET, "team-a", 60, now=NOW)
    assert auth.verify_token(SECRET, token, now=NOW + 59) == "team-a"
    with pytest.raises(PermissionDenied, match="expired"):
        auth.verify_token(SECRET, token, now=NOW + 60)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.replace(".", ""),  # no separator
        lambda t: "x" + t,  # payload changed
        lambda t: "",
        lambda t: "!!!.???",
    ],
)
def test_tampered_token_is_refused(mangle: object) -> None:
    token = auth.issue_token(SECRET, "team-a", 60, now=NOW)
    with pytest.raises(PermissionDenied):
        auth.verify_token(SECRET, mangle(token), now=NOW)  # type: ignore[operator]


def test_token_of_another_secret_is_refused() -> None:
    token = auth.issue_token(OTHER, "team-a", 60, now=NOW)
    with pytest.raises(PermissionDenied, match="signature"):
        auth.verify_token(SECRET, token, now=NOW)


def test_forged_payload_with_copied_signature_is_refused() -> None:
    a = auth.issue_token(SECRET, "a", 60, now=NOW)
    b = auth.issue_token(SECRET, "b", 60, now=NOW)
    forged = b.split(".")[0] + "." + a.split(".")[1]
    with pytest.raises(PermissionDenied):
        auth.verify_token(SECRET, forged, now=NOW)


def test_token_is_not_a_capability_and_back() -> None:
    token = auth.issue_token(SECRET, "a", 60, now=NOW)
    with pytest.raises(PermissionDenied, match="signature"):
        auth.verify_capability(SECRET, token.encode(), now=NOW)
    cap, _ = auth.issue_capability(SECRET, "a", {"m1": ""}, 60, now=NOW)
    with pytest.raises(PermissionDenied, match="signature"):
        auth.verify_token(SECRET, cap.decode(), now=NOW)


def test_capability_checks_mount_and_prefix() -> None:
    cap, exp = auth.issue_capability(SECRET, "ref", {"m1": "sub/dir", "m2": ""}, 60, now=NOW)
    assert exp == NOW + 60
    verified = auth.verify_capability(SECRET, cap, now=NOW)
    assert verified.namespace == "ref"
    verified.check("m1", "sub/dir")
    verified.check("m1", "sub/dir/file.bin")
    verified.check("m2", "anything/at/all")
    with pytest.raises(PermissionDenied, match="outside"):
        verified.check("m1", "sub/dirx/file.bin")
    with pytest.raises(PermissionDenied, match="outside"):
        verified.check("m1", "sub/other.bin")
    with pytest.raises(PermissionDenied, match="does not cover"):
        verified.check("m3", "sub/dir/file.bin")


def test_capability_missing_expired_or_tampered_is_refused() -> None:
    cap, _ = auth.issue_capability(SECRET, "a", {"m1": ""}, 60, now=NOW)
    with pytest.raises(PermissionDenied, match="required"):
        auth.verify_capability(SECRET, None, now=NOW)
    with pytest.raises(PermissionDenied, match="expired"):
        auth.verify_capability(SECRET, cap, now=NOW + 61)
    with pytest.raises(PermissionDenied):
        auth.verify_capability(SECRET, cap[:-1] + b"A" if cap[-1:] != b"A" else cap[:-1] + b"B")
    with pytest.raises(PermissionDenied):
        auth.verify_capability(SECRET, b"\xff\xfe", now=NOW)
    with pytest.raises(PermissionDenied):
        auth.verify_capability(OTHER, cap, now=NOW)


def test_metadata_bearer_round_trip() -> None:
    key, value = auth.bearer("abc.def")
    assert auth.token_from_metadata([("x", "y"), (key, value)]) == "abc.def"
    assert auth.token_from_metadata([(key, b"Bearer abc.def")]) == "abc.def"
    assert auth.token_from_metadata([(key, "Basic abc")]) is None
    assert auth.token_from_metadata(None) is None


def test_secret_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "home" / auth.SECRET_FILE
    secret = auth.create_secret_file(path)
    assert len(secret) == auth.SECRET_BYTES
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert auth.create_secret_file(path) == secret
    assert auth.load_secret(path) == secret


def test_bad_secret_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--cluster-secret-file"):
        auth.load_secret(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.write_text("not hex")
    with pytest.raises(ConfigError, match="not hex"):
        auth.load_secret(bad)
    short = tmp_path / "short"
    short.write_text("abcd")
    with pytest.raises(ConfigError, match="at least 16"):
        auth.load_secret(short)


def test_issue_token_refuses_bad_input() -> None:
    with pytest.raises(ConfigError):
        auth.issue_token(SECRET, "", 60)
    with pytest.raises(ConfigError, match="--ttl"):
        auth.issue_token(SECRET, "a", 0)
