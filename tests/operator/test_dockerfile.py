"""The Dockerfile: it cannot be built here (no Docker engine), so it is read.

Checks that the one image installs what every component needs (the package
with the ``fuse`` and ``operator`` extras, fuse3, the mount tools), that its
ENTRYPOINT is our CLI, and that every command the reconcilers and the Helm
chart make our image run is a real command of that CLI: each argv is parsed
by the CLI's own parser and each subcommand's ``--help`` runs.

The Dockerfile grammar used here is the small part the file needs: one
instruction a line, ``\\`` continuations, ``#`` comments.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
POD_ENV = {"POD_NAME": "rt-worker-0", "POD_IP": "10.1.2.3", "NODE_NAME": "node-a"}
# Executables other than ours that our containers run, and the Debian package of each.
SYSTEM_TOOLS = {"sh": None, "mountpoint": "util-linux", "umount": "mount", "fusermount3": "fuse3"}


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` for each instruction of a Dockerfile."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a stage starts at FROM)."""
    found: list[list[tuple[str, str]]] = []
    for item in instructions((ROOT / "Dockerfile").read_text()):
        if item[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(item)
    return found


def apt_packages(stage: list[tuple[str, str]]) -> set[str]:
    packages: set[str] = set()
    for word, rest in stage:
        if word == "RUN":
            for command in rest.split("&&"):
                argv = shlex.split(command)
                if argv[:2] == ["apt-get", "install"]:
                    packages |= {a for a in argv[2:] if not a.startswith("-")}
    return packages


def test_two_stages_on_the_python_we_support() -> None:
    build, runtime = stages()
    args = dict(
        rest.split("=", 1)
        for word, rest in instructions((ROOT / "Dockerfile").read_text())
        if word == "ARG"
    )
    image = args["PYTHON_IMAGE"]
    wanted = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert image.startswith(f"python:{wanted}-slim"), image
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    assert {"libfuse3-dev", "pkg-config", "build-essential"} <= apt_packages(build)
    needed = {package for package in SYSTEM_TOOLS.values() if package} | {"libfuse3-3"}
    assert needed <= apt_packages(runtime)


def test_installs_the_package_with_the_extras_the_components_need() -> None:
    build, runtime = stages()
    copied = {part for word, rest in build if word == "COPY" for part in rest.split()[:-1]}
    assert {"pyproject.toml", PYPROJECT["project"]["readme"], "cachecluster"} <= copied
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"!pyproject.toml", "!README.md", "!cachecluster/"} <= set(ignore)
    run = " ".join(rest for word, rest in runtime if word == "RUN")
    extras = re.search(r"cachecluster\[([a-z,]+)\]", run)
    assert extras is not None, run
    chosen = set(extras.group(1).split(","))
    assert chosen == {"fuse", "operator"}
    assert chosen <= set(PYPROJECT["project"]["optional-dependencies"])
    assert '".[fuse,operator]"' in " ".join(rest for word, rest in build if word == "RUN")
    entrypoint = [yaml.safe_load(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    assert entrypoint == [["cachecluster"]]
    assert "cachecluster" in PYPROJECT["project"]["scripts"]
