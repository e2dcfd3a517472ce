"""s3fs-fuse with ``use_cache`` (Debian's s3fs).

Credentials in a ``passwd_file`` (mode 600), path-style requests, the cache
folder on tmpfs, read-only. Cold: a new mount over an emptied cache folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.peers.base import UfsEnv
from bench.peers.cached_mount import CachedFuseMount


class S3fsFuse(CachedFuseMount):
    """``s3fs BUCKET MOUNT -f -o use_cache=DIR,ro,use_path_request_style``."""

    name = "s3fs-fuse"
    label = "s3fs-fuse, use_cache"
    cold_how = "new mount, use_cache folder emptied"
    binary = "s3fs"
    folder = "s3fs"

    def _command(self, env: UfsEnv) -> tuple[Sequence[str], Mapping[str, str] | None]:
        passwd = env.workdir / "s3fs.passwd"
        if not passwd.exists():
            passwd.touch(mode=0o600)
            passwd.write_text(f"{env.access_key}:{env.secret_key}\n")
        command = [
            "s3fs", env.bucket, str(self.root), "-f",
            "-o", f"url={env.endpoint}", "-o", "use_path_request_style",
            "-o", f"passwd_file={passwd}", "-o", f"use_cache={self._cache}", "-o", "ro",
        ]  # fmt: skip
        return command, None
