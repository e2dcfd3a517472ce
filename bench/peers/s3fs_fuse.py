"""s3fs-fuse with ``use_cache`` (Debian's s3fs).

Credentials in a ``passwd_file`` (mode 600), path-style requests, read-only.
``use_cache=DIR`` has no default (no cache without it): the user picks the
folder, usually on disk (under /tmp or /var/cache); here it is a folder under
the suite's peer cache folder (on the root disk or on tmpfs, as
``--peer-cache`` says). Cold: a new mount over an emptied cache folder.
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
    default_cache = "s3fs-fuse's use_cache=DIR has no default: the user picks the folder"

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
