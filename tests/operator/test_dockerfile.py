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
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cachecluster.cli.main import build_parser
from cachecluster.operator import naming
from cachecluster.operator.dataload_objects import desired_dataload_objects
from cachecluster.operator.runtime_objects import desired_runtime_objects
from tests.operator.helm_tool import find_helm
from tests.operator.test_runtime_objects import EXAMPLES, example_runtimes

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


def our_containers(objects: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    found = []
    for obj in objects:
        spec = obj.get("spec", {})
        template = spec.get("jobTemplate", {}).get("spec", spec).get("template")
        if template:
            found += [c for c in template["spec"]["containers"] if c["image"] == image]
    return found


def expand(arg: str) -> str:
    return re.sub(r"\$\(([A-Z_]+)\)", lambda m: POD_ENV[m.group(1)], arg)


def argvs(container: dict[str, Any]) -> tuple[list[list[str]], set[str]]:
    """The ``cachecluster`` argvs a container runs, and the other executables it calls."""
    ours: list[list[str]] = []
    tools: set[str] = set()
    command = container.get("command")
    execs = [
        container.get(probe, {}).get("exec", {}).get("command")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe")
    ]
    execs.append(container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command"))
    if command is None:
        ours.append([expand(a) for a in container["args"]])  # ENTRYPOINT cachecluster
    else:
        execs.append(command)
    for argv in filter(None, execs):
        if argv[0] == "cachecluster":
            ours.append([expand(a) for a in argv[1:]])
            continue
        tools.add(argv[0])
        if argv[:2] == ["sh", "-c"]:
            script = argv[2].replace("$$", "$")
            for part in re.findall(r"\bcachecluster [^)&;|>]*", script):
                ours.append(shlex.split(part)[1:])
    return ours, tools


def all_containers(image: str) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for body in example_runtimes():
        objects += desired_runtime_objects(body, image=image, cluster_secret="ab" * 32)
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "DataLoad":
                doc["metadata"]["uid"] = "u"
                runtime = (doc["metadata"]["namespace"], doc["spec"]["dataset"]["name"])
                objects += desired_dataload_objects(doc, runtime, image=image)
    helm = find_helm()
    if helm is None:
        pytest.skip("no helm to render the chart (see tests/operator/helm_tool.py)")
    rendered = subprocess.run(
        [
            str(helm),
            "template",
            "cc",
            str(ROOT / "operator" / "chart"),
            "--set",
            f"image.tag={image.split(':')[1]}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    objects += [doc for doc in yaml.safe_load_all(rendered) if doc]
    return our_containers(objects, image)


def test_every_command_the_chart_and_reconcilers_run_exists() -> None:
    image = "ghcr.io/cachecluster/cachecluster:0.1.0"
    containers = all_containers(image)
    names = {c["name"] for c in containers}
    assert {"master", "worker", "fuse", "operator", "csi-plugin"} <= names
    parser = build_parser()
    subcommands: set[str] = set()
    tools: set[str] = set()
    for container in containers:
        found, used = argvs(container)
        assert found, container["name"]
        tools |= used
        for argv in found:
            parser.parse_args(argv)  # SystemExit (a test failure) for an unknown flag
            subcommands.add(argv[0])
    assert subcommands >= {"master", "worker", "mount", "unmount", "token", "operator", "csi"}
    assert tools <= set(SYSTEM_TOOLS), tools
    for subcommand in sorted(subcommands):
        done = subprocess.run(
            [sys.executable, "-m", "cachecluster", subcommand, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (subcommand, done.stderr)
    assert naming.DEFAULT_IMAGE.rpartition(":")[0] == image.rpartition(":")[0]
