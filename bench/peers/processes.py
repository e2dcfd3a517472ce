"""Starting and stopping the processes and FUSE mounts the peer suite makes.

Every mount is served by a process in its own session; :func:`stop_mount`
sends its group SIGTERM, then SIGKILL, and detaches whatever mount is left,
so nothing stays mounted or running after a failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from cachecluster.common.mountinfo import mount_at, read_mounts

MOUNT_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


class MountFailed(RuntimeError):
    """A mount did not come up; the message carries the tail of its log."""


def is_mounted(path: Path) -> bool:
    """True when something is mounted exactly at ``path``."""
    return mount_at(path) is not None


def tail(path: Path, lines: int = 8) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_mount(
    command: Sequence[str],
    mountpoint: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Run ``command`` (a foreground FUSE server) in its own session; return once mounted."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    deadline = time.monotonic() + MOUNT_TIMEOUT_S
    try:
        while not is_mounted(mountpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                why = "exited" if process.returncode is not None else "timed out"
                raise MountFailed(f"{command[0]} mount at {mountpoint} {why}: {tail(log_path)}")
            time.sleep(0.05)
    except BaseException:  # failed, or interrupted while waiting: leave nothing behind
        stop_mount(process, mountpoint)
        raise
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after a grace period; reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError):  # helpers left in the group
        os.killpg(process.pid, signal.SIGKILL)


def detach(mountpoint: Path) -> None:
    """Lazily unmount ``mountpoint`` until nothing is mounted there."""
    for _ in range(5):
        if not is_mounted(mountpoint):
            return
        done = subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def stop_mount(process: subprocess.Popen[bytes] | None, mountpoint: Path) -> None:
    """Stop the serving process and make sure nothing is left mounted at ``mountpoint``."""
    if process is not None:
        stop_process(process)
    detach(mountpoint)


def detach_all_under(root: Path) -> None:
    """Detach every mount below ``root`` (a last resort before removing it)."""
    prefix = str(root).rstrip("/") + "/"
    for entry in read_mounts():
        if entry.mount_point.startswith(prefix):
            detach(Path(entry.mount_point))


def fuse_missing(binary: str | None = None) -> str | None:
    """Why a FUSE mount cannot be made here (None when it can)."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is not installed (apt-get install fuse3)"
    if binary is not None and shutil.which(binary) is None:
        return f"the {binary!r} binary is not installed"
    return None


def can_drop_caches() -> bool:
    """True when this process may write /proc/sys/vm/drop_caches (root)."""
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_page_cache() -> bool:
    """Write back and drop the kernel's clean page cache; False when not allowed."""
    if not can_drop_caches():
        return False
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")
    return True
