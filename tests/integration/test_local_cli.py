"""``cachecluster up``, ``status``, ``down`` as a user runs them (subprocesses, real clusters).

One live cluster per home: a second ``up`` refuses with a clear message; a
cluster whose processes all died is cleaned up by the next ``up``; ``-f``
takes the worker count and tiers of a runtime YAML; ``down`` stops every
process, removes the record and the MEM tiers, keeps disk tiers unless
``--purge``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachecluster.local.layout import ClusterLayout, process_alive, read_cluster_record

EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75
EX_USAGE = 64


def cli(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cachecluster ARGS --home HOME`` and capture its output."""
    env = {k: v for k, v in os.environ.items() if k != "CACHECLUSTER_MASTER"}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "cachecluster", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def recorded_pids(home: Path) -> list[tuple[int, int | None]]:
    """``(pid, start ticks)`` of every process ``cluster.json`` lists."""
    record = read_cluster_record(ClusterLayout(home)) or {}
    pids = [(int(record["master_pid"]), record.get("master_start_ticks"))]
    pids += [(int(w["pid"]), w.get("start_ticks")) for w in record.get("workers", [])]
    return pids


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A cluster home; whatever runs in it at the end is killed."""
    home = tmp_path / "home"
    try:
        yield home
    finally:
        if (home / "cluster.json").exists():
            for pid, ticks in recorded_pids(home):
                if process_alive(pid, ticks):
                    os.killpg(pid, signal.SIGKILL)
            cli(home, "down", "--purge")


def status_json(home: Path) -> dict[str, Any]:
    """``cachecluster status -o json`` parsed."""
    done = cli(home, "status", "-o", "json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def free_port_run(count: int) -> int:
    """A port ``p`` such that ``p .. p+count-1`` could all be bound a moment ago."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + count > 65535:
            continue
        held: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    pytest.skip("no run of free ports found")


def test_up_status_refuse_down(home: Path, tmp_path: Path) -> None:
    ssd = tmp_path / "ssd"
    base = free_port_run(7)  # the master's port, then 3 a worker
    up = cli(
        home,
        "up",
        "--workers",
        "2",
        "--block-size",
        "1Mi",
        "--tier",
        f"SSD:{ssd}:1Gi",
        "--master-port",
        str(base),
        "--worker-port-base",
        str(base + 1),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    assert "w1" in up.stdout and "127.0.0.1:" in up.stdout
    record = read_cluster_record(ClusterLayout(home))
    assert record is not None and len(record["workers"]) == 2
    assert record["master"] == f"127.0.0.1:{base}"
    assert [w["data"] for w in record["workers"]] == [
        f"127.0.0.1:{base + 1}",
        f"127.0.0.1:{base + 4}",
    ]
    assert record["workers"][1]["grpc"] == f"127.0.0.1:{base + 5}"
    assert record["workers"][0]["unix_socket"]

    status = status_json(home)
    assert status["master"]["reachable"] and status["master"]["pid"] == record["master_pid"]
    workers = status["workers"]
    assert [w["id"] for w in workers] == ["w0", "w1"]
    assert all(w["state"] == "ACTIVE" and w["alive"] for w in workers)
    assert [t["medium"] for t in workers[0]["tiers"]] == ["SSD"]
    assert workers[0]["tiers"][0]["capacity"] == 1 << 30
    assert workers[0]["tiers"][0]["path"].startswith(str(ssd / "w0"))
    table = cli(home, "status")
    assert table.returncode == 0 and "ACTIVE" in table.stdout and "SSD" in table.stdout

    again = cli(home, "up")
    assert again.returncode == EX_TEMPFAIL
    assert "already running" in again.stderr and "cachecluster down" in again.stderr

    pids = recorded_pids(home)
    down = cli(home, "down")
    assert down.returncode == 0, down.stderr
    assert not any(process_alive(pid, ticks) for pid, ticks in pids)
    assert not (home / "cluster.json").exists()
    assert (ssd / "w0").is_dir(), "disk tiers are kept without --purge"
    assert not Path(record["workers"][0]["unix_socket"]).exists()
    gone = cli(home, "status")
    assert gone.returncode == EX_UNAVAILABLE and "no cluster" in gone.stderr
    assert cli(home, "down").returncode == 0  # nothing to stop is fine


def test_a_dead_cluster_is_cleaned_up_and_runtime_yaml_is_used(home: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text(
        "apiVersion: data.fluid.io/v1alpha1\n"
        "kind: CacheRuntime\n"
        "metadata: {name: demo}\n"
        "spec:\n"
        "  replicas: 1\n"
        "  tieredstore:\n"
        "    levels:\n"
        f"    - {{mediumtype: HDD, path: {tmp_path / 'hdd'}, quota: 2Gi}}\n"
    )
    first = cli(home, "up", "--workers", "1")
    assert first.returncode == 0, first.stderr
    record = read_cluster_record(ClusterLayout(home)) or {}
    mem_tiers = [t["path"] for t in record["workers"][0]["tiers"] if t["mediumtype"] == "MEM"]
    assert mem_tiers and Path(mem_tiers[0]).is_dir()
    for pid, _ in recorded_pids(home):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(process_alive(pid, ticks) for pid, ticks in recorded_pids(home)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = cli(home, "up", "-f", str(runtime))
    assert second.returncode == 0, second.stderr
    assert not Path(mem_tiers[0]).exists(), "the dead cluster's MEM tier is removed"
    status = status_json(home)
    assert [w["id"] for w in status["workers"]] == ["w0"]
    assert [t["medium"] for t in status["workers"][0]["tiers"]] == ["HDD"]
    down = cli(home, "down", "--purge")
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "hdd" / "w0").exists(), "--purge removes disk tiers"


def test_bad_runtime_yaml_names_the_field(home: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text("kind: JindoRuntime\nspec:\n  replicas: -1\n")
    done = cli(home, "up", "-f", str(runtime))
    assert done.returncode == EX_USAGE
    assert "spec.replicas" in done.stderr and str(runtime) in done.stderr
    assert not (home / "cluster.json").exists()


def test_a_worker_that_cannot_start_fails_up_with_its_log(home: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where a tier folder should go")
    done = cli(home, "up", "--workers", "1", "--tier", f"SSD:{blocked}:1Gi")
    assert done.returncode != 0
    assert "w0 did not start" in done.stderr and "w0.log" in done.stderr
    assert not (home / "cluster.json").exists()
    master_log = (home / "logs" / "master.log").read_text()
    assert "master stopped" in master_log or "stopping" in master_log
