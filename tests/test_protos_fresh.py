"""The committed gRPC modules match protos/*.proto (regenerate: make protos)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from cachecluster.protos import generate


def test_generated_modules_are_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    status = generate.main(["--check"])
    assert status == 0, capsys.readouterr().err


def test_check_names_changed_missing_and_orphaned_modules(tmp_path: Path) -> None:
    for path in generate.PACKAGE_DIR.iterdir():
        if generate.is_generated(path):
            shutil.copy(path, tmp_path / path.name)
    assert generate.sync(tmp_path, write=False) == []
    (tmp_path / "worker_pb2.py").write_text("# edited by hand\n")
    (tmp_path / "master_pb2_grpc.pyi").unlink()
    (tmp_path / "gone_pb2.py").write_text("")
    stale = ["gone_pb2.py", "master_pb2_grpc.pyi", "worker_pb2.py"]
    assert generate.sync(tmp_path, write=False) == stale
    assert generate.sync(tmp_path) == stale
    assert generate.sync(tmp_path, write=False) == []


def test_generated_imports_are_package_relative() -> None:
    from cachecluster.protos import master_pb2_grpc, worker_pb2_grpc

    assert hasattr(master_pb2_grpc, "MasterServiceStub")
    assert not {"common_pb2", "master_pb2", "worker_pb2"} & sys.modules.keys()
    assert hasattr(worker_pb2_grpc, "add_WorkerServiceServicer_to_server")
    for path in generate.PACKAGE_DIR.glob("*_pb2*.py*"):
        for line in path.read_text().splitlines():
            assert not line.startswith("import ") or "_pb2" not in line, (path.name, line)
