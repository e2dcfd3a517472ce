"""The dataset registry: validation, mount ids and layout, persistence in datasets.json."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from cachecluster.common.errors import ConfigError, InvalidArgument, NotFound
from cachecluster.master.datasets import DATASETS_FILE, DatasetRegistry, mount_id_of


def one_mount(uri: str = "s3://bucket/dir", **extra: Any) -> dict[str, Any]:
    return {"mounts": [{"mountPoint": uri, **extra}]}


def test_mount_id_is_the_agreed_hash() -> None:
    expected = hashlib.blake2b(b"ns\0ds\0m0\0s3://b/d").hexdigest()[:16]
    assert mount_id_of("ns", "ds", "m0", "s3://b/d") == expected


def test_single_mount_without_path_is_the_root() -> None:
    registry = DatasetRegistry()
    record, created = registry.apply("default", "ds", one_mount(name="m0"))
    assert created
    (mount,) = record.mounts
    assert (mount.name, mount.path, mount.uri) == ("m0", "", "s3://bucket/dir")
    assert mount.mount_id == mount_id_of("default", "ds", "m0", "s3://bucket/dir")
    assert registry.mount(mount.mount_id) == mount


def test_mount_name_defaults_to_last_element_and_paths_to_names() -> None:
    registry = DatasetRegistry()
    spec = {"mounts": [{"mountPoint": "s3://bucket/train"}, {"mountPoint": "local:///data/eval"}]}
    record, _ = registry.apply("default", "ds", spec)
    assert [(m.name, m.path) for m in record.mounts] == [("train", "train"), ("eval", "eval")]


def test_apply_updates_and_bumps_generation_only_on_change() -> None:
    registry = DatasetRegistry()
    first, created = registry.apply("ns", "ds", one_mount(name="m0"))
    assert (first.generation, created) == (1, True)
    same, created = registry.apply("ns", "ds", one_mount(name="m0"))
    assert (same.generation, created) == (1, False)
    changed, created = registry.apply("ns", "ds", one_mount("s3://bucket/other", name="m0"))
    assert (changed.generation, created) == (2, False)
    # The old mount is gone from the mount table, the new one is there.
    with pytest.raises(NotFound):
        registry.mount(first.mounts[0].mount_id)
    assert registry.mount(changed.mounts[0].mount_id).uri == "s3://bucket/other"


def test_get_list_delete() -> None:
    registry = DatasetRegistry()
    registry.apply("b", "two", one_mount())
    registry.apply("a", "one", one_mount())
    registry.apply("b", "one", one_mount())
    assert [r.ref for r in registry.datasets()] == ["a/one", "b/one", "b/two"]
    assert [r.ref for r in registry.datasets("b")] == ["b/one", "b/two"]
    assert registry.get("a", "one").name == "one"
    deleted = registry.delete("a", "one")
    assert deleted is not None
    assert registry.delete("a", "one") is None
    with pytest.raises(NotFound, match="no dataset a/one"):
        registry.get("a", "one")
    with pytest.raises(NotFound):
        registry.mount(deleted.mounts[0].mount_id)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "must be a JSON object"),
        ({}, "spec.mounts: must be a non-empty list"),
        ({"mounts": []}, "non-empty list"),
        ({"mounts": ["s3://b"]}, r"mounts\[0\]: expected a mapping"),
        ({"mounts": [{"name": "x"}]}, r"mountPoint: is required"),
        ({"mounts": [{"mountPoint": "s3://b", "bogus": 1}]}, "unknown field"),
        ({"mounts": [{"mountPoint": "s3://"}]}, "expected 's3://bucket"),
        ({"mounts": [{"mountPoint": "local://rel/dir"}]}, "must be absolute"),
        ({"mounts": [{"mountPoint": "s3://b", "path": "/../x"}]}, "may not contain '..'"),
        ({"mounts": [{"mountPoint": "s3://b", "options": {"k": 1}}]}, "expected a string"),
        ({"mounts": [{"mountPoint": "s3://b", "name": "a/b"}]}, r"\.name"),
        (
            {
                "mounts": [
                    {"mountPoint": "s3://b", "name": "x"},
                    {"mountPoint": "s3://c", "name": "x"},
                ]
            },
            r"mounts\[1\].name: 'x' is already the name of spec.mounts\[0\]",
        ),
        (
            {"mounts": [{"mountPoint": "s3://b", "path": "/"}, {"mountPoint": "s3://c"}]},
            "must be the only mount",
        ),
        (
            {
                "mounts": [
                    {"mountPoint": "s3://b", "name": "a", "path": "/x"},
                    {"mountPoint": "s3://c", "name": "b", "path": "/x"},
                ]
            },
            r"mounts\[1\].path: /x is also the path of spec.mounts\[0\]",
        ),
        (
            {
                "mounts": [
                    {"mountPoint": "s3://b", "name": "a", "path": "/x"},
                    {"mountPoint": "s3://c", "name": "b", "path": "/x-y"},
                    {"mountPoint": "s3://c", "name": "c", "path": "/x/y"},
                ]
            },
            r"mounts\[2\].path: /x/y and spec.mounts\[0\] at /x are nested",
        ),
        (
            {"mounts": [{"mountPoint": "s3://b", "encryptOptions": [{"name": "k"}]}]},
            r"encryptOptions\[0\].valueFrom.secretKeyRef: is required",
        ),
        (
            {
                "mounts": [
                    {
                        "mountPoint": "s3://b",
                        "encryptOptions": [
                            {"name": "k", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                        ],
                    }
                ]
            },
            r"secretKeyRef: secret ns/s does not exist",
        ),
    ],
)
def test_invalid_specs_are_one_clear_error(spec: Any, message: str) -> None:
    registry = DatasetRegistry()
    with pytest.raises(InvalidArgument, match=message):
        registry.apply("ns", "ds", spec)
    assert registry.datasets() == []


def test_unknown_scheme_names_the_scheme_and_the_supported_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown UFS scheme 'gs'.*supported: .*s3"):
        DatasetRegistry().apply("ns", "ds", one_mount("gs://bucket"))


@pytest.mark.parametrize(("namespace", "name"), [("NS", "ds"), ("ns", "Bad_Name"), ("", "ds")])
def test_refs_follow_kubernetes_names(namespace: str, name: str) -> None:
    with pytest.raises(InvalidArgument):
        DatasetRegistry().apply(namespace, name, one_mount())


def test_persisted_0600_and_reloaded(tmp_path: Path) -> None:
    registry = DatasetRegistry(tmp_path)
    options = {"fs.s3.endpoint": "http://127.0.0.1:1", "fs.s3.accessKeySecret": "s3cr3t"}
    record, _ = registry.apply("ns", "ds", one_mount(name="m0", options=options))
    registry.apply("ns", "gone", one_mount())
    registry.delete("ns", "gone")
    path = tmp_path / DATASETS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry["name"] for entry in json.loads(path.read_text())["datasets"]] == ["ds"]

    reloaded = DatasetRegistry(tmp_path)
    assert reloaded.load() == 1
    again = reloaded.get("ns", "ds")
    assert again.mounts == record.mounts
    assert again.generation == record.generation
    assert reloaded.mount(record.mounts[0].mount_id).options == options


def test_load_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert DatasetRegistry(tmp_path).load() == 0


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"version": 99, "datasets": []}),
        json.dumps({"version": 1, "datasets": [{"namespace": "ns", "name": "ds"}]}),
        json.dumps(
            {"version": 1, "datasets": [{"namespace": "ns", "name": "ds", "spec": {"mounts": []}}]}
        ),
    ],
)
def test_unreadable_file_fails_start_naming_the_file(tmp_path: Path, content: str) -> None:
    (tmp_path / DATASETS_FILE).write_text(content)
    with pytest.raises(ConfigError, match=DATASETS_FILE):
        DatasetRegistry(tmp_path).load()


def test_failed_write_changes_nothing(tmp_path: Path) -> None:
    registry = DatasetRegistry(tmp_path)
    registry.apply("ns", "ds", one_mount())
    (tmp_path / DATASETS_FILE).unlink()
    (tmp_path / DATASETS_FILE / "in-the-way").mkdir(parents=True)  # the rename must fail
    with pytest.raises(OSError):
        registry.apply("ns", "other", one_mount())
    assert [r.ref for r in registry.datasets()] == ["ns/ds"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [DATASETS_FILE]  # no temporary left
