"""Run a mount: in the foreground, or as a detached process that logs to a file.

``serve`` runs pyfuse3's loop (asyncio mode) until the mount goes away:
``cachecluster unmount``, ``fusermount3 -u``, or SIGTERM/SIGINT, which this
module turns into :func:`pyfuse3.terminate` so the mount is always removed
(pyfuse3 leaves it behind by itself). ``mount_background`` starts ``serve``
in a new session and returns once the kernel shows the mount. Before
mounting, a stale mount at the same path (its process died: "Transport
endpoint is not connected") is detached with ``fusermount3 -u -z``.
Each live mount leaves a record in ``<home>/mounts/`` for :func:`list_mounts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop

from cachecluster.client.cluster_view import DEFAULT_METADATA_TTL
from cachecluster.common.errors import CacheClusterError, ConfigError, ErrorKind, Unavailable
from cachecluster.common.mountinfo import STALE_ERRNOS, mount_at

log = logging.getLogger(__name__)

FSNAME = "cachecluster"
READ_AHEAD_KB = 1024
"""The mount's ``read_ahead_kb``: 1 MiB requests for buffered sequential reads (LIMITS.md)."""
MOUNT_TIMEOUT_S = 20.0
UNMOUNT_TIMEOUT_S = 10.0


class MountError(CacheClusterError):
    """A mount could not be made or removed."""

    kind = ErrorKind.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class MountOptions:
    """What ``serve`` mounts and how."""

    mountpoint: str
    prefix: str = ""
    master: str | None = None
    token: str | None = None
    metadata_ttl: float = DEFAULT_METADATA_TTL
    direct_io: bool = False
    log_file: str | None = None


# ---------------------------------------------------------------- kernel state


def is_mounted(mountpoint: str | Path) -> bool:
    """True when a cachecluster FUSE mount sits at ``mountpoint``."""
    entry = mount_at(mountpoint)
    return entry is not None and entry.fstype.startswith("fuse")


def is_stale(mountpoint: str | Path) -> bool:
    """True when a mount sits there but its process is gone."""
    if mount_at(mountpoint) is None:
        return False
    try:
        # statfs always asks the FUSE process; stat may answer from the kernel's
        # attribute cache for a while after the process died.
        os.statvfs(mountpoint)
    except OSError as exc:
        return exc.errno in STALE_ERRNOS
    return False


def detach(mountpoint: str | Path) -> None:
    """Lazily unmount whatever is at ``mountpoint`` (``fusermount3 -u -z``, else ``umount -l``)."""
    path = os.path.abspath(mountpoint)
    for command in (["fusermount3", "-u", "-z", path], ["umount", "-l", path]):
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode == 0 or mount_at(path) is None:
            return
    if mount_at(path) is not None:
        raise MountError(f"{path}: could not unmount")


def prepare_mountpoint(mountpoint: str | Path) -> str:
    """The absolute mount point, created if missing, a stale mount removed.

    Refuses a path where a live mount already is.
    """
    path = os.path.abspath(mountpoint)
    if is_stale(path):
        log.warning("%s: stale mount (its process died): unmounting it", path)
        detach(path)
    elif mount_at(path) is not None and is_mounted(path):
        raise MountError(f"{path}: already mounted (cachecluster unmount {path} first)")
    os.makedirs(path, exist_ok=True)
    return path


def raise_read_ahead(mountpoint: str | Path) -> None:
    """Set the mount's ``read_ahead_kb`` to :data:`READ_AHEAD_KB` (kept when not root)."""
    entry = mount_at(mountpoint)
    if entry is None:
        return
    knob = Path("/sys/class/bdi") / entry.device / "read_ahead_kb"
    try:
        knob.write_text(str(READ_AHEAD_KB))
    except OSError as exc:  # not root: 128 KiB requests, still correct
        log.info("%s: read_ahead_kb stays (%s)", mountpoint, exc)
    else:
        log.info("%s: read_ahead_kb %s", mountpoint, knob.read_text().strip())


# ---------------------------------------------------------------- records


def mounts_dir(home: str | Path | None = None) -> Path:
    """``<home>/mounts``: one JSON record a live mount."""
    base = home or os.environ.get("CACHECLUSTER_HOME") or Path.home() / ".cachecluster"
    return Path(base).expanduser() / "mounts"


def _record_path(mountpoint: str, home: str | Path | None = None) -> Path:
    digest = hashlib.sha256(mountpoint.encode()).hexdigest()[:16]
    return mounts_dir(home) / f"{digest}.json"


def _write_record(options: MountOptions) -> Path:
    path = _record_path(options.mountpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = asdict(options)
    record.pop("token")
    record["pid"] = os.getpid()
    path.write_text(json.dumps(record))
    return path


def list_mounts(home: str | Path | None = None) -> list[dict[str, Any]]:
    """Records of the live mounts (mount point, view, pid, log file); stale ones are dropped."""
    found: list[dict[str, Any]] = []
    folder = mounts_dir(home)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(int(record.get("pid", 0))) and is_mounted(record["mountpoint"]):
            found.append(record)
    return found


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie nobody reaped has exited
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


# ---------------------------------------------------------------- serving


async def _serve(options: MountOptions) -> None:
    import pyfuse3
    import pyfuse3.asyncio

    from cachecluster.client.client import AsyncClient
    from cachecluster.fuse import device_wait
    from cachecluster.fuse.ops import CacheClusterOperations, MountView

    pyfuse3.asyncio.enable()
    device_wait.install()
    async with AsyncClient(
        options.master, token=options.token, metadata_ttl=options.metadata_ttl
    ) as client:
        if options.prefix:  # fail before mounting when the view is not readable
            await client.ls(options.prefix)
        loop = asyncio.get_running_loop()

        def after_init() -> None:  # after the INIT reply (which sets the bdi's read-ahead)
            loop.call_soon(raise_read_ahead, options.mountpoint)

        ops = CacheClusterOperations(
            client,
            MountView(options.prefix),
            attr_timeout=options.metadata_ttl,
            direct_io=options.direct_io,
            on_init=after_init,
        )
        fuse_options = set(pyfuse3.default_options)
        fuse_options.discard("default_permissions")
        fuse_options |= {f"fsname={FSNAME}", f"subtype={FSNAME}", "ro"}
        if os.getuid() == 0:
            fuse_options.add("allow_other")
        pyfuse3.init(ops, options.mountpoint, fuse_options)
        record = _write_record(options)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pyfuse3.terminate)
        unmounted = False
        try:
            log.info("mounted %s at %s", options.prefix or "every namespace", options.mountpoint)
            await pyfuse3.main()
            # main() also returns when the mount was removed from outside.
            unmounted = mount_at(options.mountpoint) is None
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await ops.close_all()
            pyfuse3.close(unmount=not unmounted)
            record.unlink(missing_ok=True)
            log.info("unmounted %s", options.mountpoint)


def serve(options: MountOptions) -> None:
    """Mount and serve until unmounted or signalled (blocks)."""
    mountpoint = prepare_mountpoint(options.mountpoint)
    if options.log_file:
        handler = logging.FileHandler(options.log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        for old in list(root.handlers):  # one line a record, in the file only
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    options = MountOptions(**{**asdict(options), "mountpoint": mountpoint})
    uvloop.run(_serve(options))  # pyfuse3.asyncio and grpc.aio run on it


def mount_background(
    options: MountOptions,
    *,
    extra_env: dict[str, str] | None = None,
    timeout: float = MOUNT_TIMEOUT_S,
) -> int:
    """Start ``serve`` detached (new session, output to the log file); its pid once mounted."""
    mountpoint = prepare_mountpoint(options.mountpoint)
    log_file = options.log_file or str(mounts_dir() / f"{Path(mountpoint).name or 'root'}.log")
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    command: list[str] = [sys.executable, "-m", "cachecluster", "mount", mountpoint]
    command += ["--foreground", "--log-file", log_file]
    command += ["--metadata-ttl", str(options.metadata_ttl)]
    if options.prefix.count("/") == 1:
        command += ["--dataset", options.prefix]
    elif options.prefix:
        command += ["-n", options.prefix]
    if options.master:
        command += ["--master", options.master]
    if options.direct_io:
        command.append("--direct-io")
    env = dict(os.environ)
    if options.token:  # by the environment: not on the command line for ps to show
        env["CACHECLUSTER_TOKEN"] = options.token
    env.update(extra_env or {})
    with open(log_file, "ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_mounted(mountpoint):
            return process.pid
        if process.poll() is not None:
            raise MountError(f"{mountpoint}: mount failed:\n{_tail(log_file)}")
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    raise MountError(f"{mountpoint}: not mounted within {timeout:.0f}s:\n{_tail(log_file)}")


def _tail(path: str, lines: int = 10) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def unmount(mountpoint: str | Path, *, timeout: float = UNMOUNT_TIMEOUT_S) -> None:
    """Unmount: SIGTERM to the serving process when recorded, else ``fusermount3 -u``."""
    path = os.path.abspath(mountpoint)
    if mount_at(path) is None:
        raise MountError(f"{path}: not mounted")
    record_path = _record_path(path)
    pid = 0
    with contextlib.suppress(OSError, ValueError):
        pid = int(json.loads(record_path.read_text()).get("pid", 0))
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (_alive(pid) or mount_at(path) is not None):
            if _reap(pid):
                continue
            time.sleep(0.05)
    if mount_at(path) is not None:
        done = subprocess.run(
            ["fusermount3", "-u", path], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            if is_stale(path):
                detach(path)
            else:
                raise MountError(f"{path}: {done.stderr.strip() or 'unmount failed'}")
    record_path.unlink(missing_ok=True)


def _reap(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        got, _ = os.waitpid(pid, os.WNOHANG)
        return got == pid
    return False


def view_prefix(namespace: str | None, dataset: str | None) -> str:
    """The view a mount shows: ``NS/NAME`` for ``dataset``, ``NS`` for ``namespace``, else all."""
    if dataset:
        parts = dataset.strip("/").split("/")
        if len(parts) != 2 or not all(parts):
            raise ConfigError("--dataset", f"{dataset!r}: expected NAMESPACE/NAME")
        return "/".join(parts)
    return (namespace or "").strip("/")


def check_installed() -> None:
    """Refuse early, with a hint, when pyfuse3 or fusermount3 are missing."""
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        raise Unavailable(
            "FUSE mounts need pyfuse3: apt-get install fuse3 libfuse3-dev pkg-config; "
            "pip install 'cachecluster[fuse]'"
        ) from exc


__all__: Sequence[str] = (
    "MountOptions",
    "check_installed",
    "detach",
    "is_mounted",
    "is_stale",
    "list_mounts",
    "mount_background",
    "serve",
    "unmount",
    "view_prefix",
)
