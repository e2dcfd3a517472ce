"""Regenerate the gRPC modules of ``protos/*.proto`` into this package.

Run ``python -m cachecluster.protos.generate`` after editing a ``.proto`` file
(or ``make protos``), and commit the result. ``--check`` regenerates into a
temporary directory instead and exits 1, naming the stale files, when the
committed modules differ; ``tests/test_protos_fresh.py`` runs it.

For each ``name.proto`` it writes ``name_pb2.py`` and ``name_pb2.pyi``
(``grpc_tools.protoc`` with ``--python_out --pyi_out``) and, when the file
declares services, ``name_pb2_grpc.py`` (``--grpc_python_out``) plus a typed
``name_pb2_grpc.pyi`` written here from the descriptors, since protoc writes
none: it types stubs and servicers for ``grpc.aio``. protoc's imports
(``import common_pb2``) become package imports
(``from cachecluster.protos import common_pb2``).

The output depends on the installed ``grpcio-tools`` version: after upgrading
it, regenerate.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import descriptor_pb2

PACKAGE = "cachecluster.protos"
PACKAGE_DIR = Path(__file__).resolve().parent
PROTO_DIR = PACKAGE_DIR.parent.parent / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")

_IMPORT_RE = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)

# protoc's stubs subclass google.protobuf classes, which have no type stubs
# here (types-protobuf is not a dependency), and use bare generics: mypy
# reads them for their types but reports nothing in them.
_PYI_HEADER = "# mypy: ignore-errors\n"

# Descriptor source-location paths: FileDescriptorProto.service = 6,
# ServiceDescriptorProto.method = 2.
_SERVICE_FIELD = 6
_METHOD_FIELD = 2


def is_generated(path: Path) -> bool:
    """Whether ``path`` is a file this tool writes."""
    return path.name.endswith(GENERATED_SUFFIXES)


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Generate every module of ``proto_dir`` into ``out_dir``; the files written."""
    from grpc_tools import protoc  # a dev dependency: imported only here

    protos = sorted(proto_dir.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {proto_dir}")
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="cachecluster-protoc-") as scratch:
        descriptor_set = Path(scratch) / "descriptors.pb"
        args = [
            "grpc_tools.protoc",
            f"--proto_path={proto_dir}",
            f"--proto_path={well_known}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--descriptor_set_out={descriptor_set}",
            "--include_source_info",
            "--include_imports",
            *(str(proto) for proto in protos),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("grpc_tools.protoc failed (see above)")
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    ours = {proto.relative_to(proto_dir).as_posix() for proto in protos}
    modules = {
        f".{proto.package}.{message.name}" if proto.package else f".{message.name}": _module(
            proto.name, ours
        )
        for proto in files.file
        for message in proto.message_type
    }
    written: list[Path] = []
    for proto in files.file:
        if proto.name not in ours:
            continue  # a well-known type protoc included
        stem = Path(proto.name).stem
        written.append(_fix_imports(out_dir / f"{stem}_pb2.py"))
        written.append(_fix_imports(out_dir / f"{stem}_pb2.pyi", header=_PYI_HEADER))
        grpc_module = out_dir / f"{stem}_pb2_grpc.py"
        if proto.service:
            written.append(_fix_imports(grpc_module))
            stub_path = out_dir / f"{stem}_pb2_grpc.pyi"
            stub_path.write_text(_grpc_stub(proto, modules), encoding="utf-8")
            written.append(stub_path)
        else:
            grpc_module.unlink()  # protoc writes an empty module for files without services
    return sorted(written)


def _module(proto_name: str, ours: set[str]) -> tuple[str, str]:
    """``(package, module)`` of the ``_pb2`` module generated from ``proto_name``."""
    path = Path(proto_name)
    if proto_name in ours:
        return PACKAGE, f"{path.stem}_pb2"
    return ".".join(path.parent.parts), f"{path.stem}_pb2"  # e.g. google.protobuf


def _fix_imports(path: Path, header: str = "") -> Path:
    text = path.read_text(encoding="utf-8")
    text = header + _IMPORT_RE.sub(rf"from {PACKAGE} import \1 as \2", text)
    path.write_text(text, encoding="utf-8")
    return path


def _comment(proto: descriptor_pb2.FileDescriptorProto, path: Sequence[int]) -> str:
    for location in proto.source_code_info.location:
        if list(location.path) == list(path):
            return " ".join(location.leading_comments.split())
    return ""


def _docstring(text: str, indent: str) -> list[str]:
    if not text:
        return []
    return [f'{indent}"""{text.replace(chr(92), chr(92) * 2).replace(chr(34) * 3, "")}"""']


def _grpc_stub(
    proto: descriptor_pb2.FileDescriptorProto, modules: dict[str, tuple[str, str]]
) -> str:
    """A typed ``.pyi`` for the ``_pb2_grpc`` module of ``proto``, for ``grpc.aio``.

    ``modules`` maps full message names (``.cachecluster.v1.GetStatsRequest``)
    to the package and module that define them (``cachecluster.protos``,
    ``worker_pb2``).
    """
    stem = Path(proto.name).stem
    imports = {(PACKAGE, f"{stem}_pb2")}

    def message_type(full_name: str) -> str:
        package, module = modules[full_name]
        imports.add((package, module))
        return f"{module}.{full_name.rsplit('.', 1)[-1]}"

    body: list[str] = []
    for service_index, service in enumerate(proto.service):
        doc = _docstring(_comment(proto, (_SERVICE_FIELD, service_index)), "    ")
        stub = [f"class {service.name}Stub:", *doc]
        stub.append("    def __init__(self, channel: grpc.aio.Channel) -> None: ...")
        servicer = [f"class {service.name}Servicer:", *doc]
        for method_index, method in enumerate(service.method):
            request = message_type(method.input_type)
            response = message_type(method.output_type)
            kind = ("Stream" if method.client_streaming else "Unary") + (
                "Stream" if method.server_streaming else "Unary"
            )
            stub.append(f"    {method.name}: _{kind}[{request}, {response}]")
            if method.client_streaming:
                argument = f"request_iterator: AsyncIterator[{request}]"
            else:
                argument = f"request: {request}"
            if method.server_streaming:
                define, result = "def", f"AsyncIterator[{response}]"
            else:
                define, result = "async def", response
            servicer.append(
                f"    {define} {method.name}(\n"
                f"        self, {argument}, context: grpc.aio.ServicerContext\n"
                f"    ) -> {result}:"
            )
            path = (_SERVICE_FIELD, service_index, _METHOD_FIELD, method_index)
            servicer += _docstring(_comment(proto, path), "        ")
            servicer.append("        ...")
        body += ["", *stub, "", *servicer, ""]
        body.append(
            f"def add_{service.name}Servicer_to_server(\n"
            f"    servicer: {service.name}Servicer, server: grpc.aio.Server\n"
            ") -> None: ..."
        )
    header = [
        f'"""Typed stubs of {stem}_pb2_grpc for grpc.aio, by {PACKAGE}.generate. DO NOT EDIT."""',
        "",
        "from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence",
        "from typing import Any, Generic, TypeVar",
        "",
        "import grpc",
        "",
        *(f"from {package} import {module}" for package, module in sorted(imports)),
        "",
        _CALL_TYPES,
    ]
    return "\n".join(header + body) + "\n"


_CALL_TYPES = """\
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Metadata = Sequence[tuple[str, str | bytes]]

class _UnaryUnary(Generic[_Request, _Response]):
    def __call__(
        self,
        request: _Request,
        *,
        timeout: float | None = ...,
        metadata: _Metadata | None = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> Awaitable[_Response]: ...

class _UnaryStream(Generic[_Request, _Response]):
    def __call__(
        self,
        request: _Request,
        *,
        timeout: float | None = ...,
        metadata: _Metadata | None = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> AsyncIterator[_Response]: ...

class _StreamUnary(Generic[_Request, _Response]):
    def __call__(
        self,
        request_iterator: AsyncIterable[_Request] | Iterable[_Request],
        *,
        timeout: float | None = ...,
        metadata: _Metadata | None = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> Awaitable[_Response]: ...

class _StreamStream(Generic[_Request, _Response]):
    def __call__(
        self,
        request_iterator: AsyncIterable[_Request] | Iterable[_Request],
        *,
        timeout: float | None = ...,
        metadata: _Metadata | None = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> AsyncIterator[_Response]: ...
"""


def sync(
    package_dir: Path = PACKAGE_DIR, proto_dir: Path = PROTO_DIR, *, write: bool = True
) -> list[str]:
    """Names of the generated modules of ``package_dir`` that differ from a fresh build.

    Missing, changed and orphaned modules all count. With ``write`` they are
    then brought up to date (orphans deleted); without, nothing is touched.
    """
    with tempfile.TemporaryDirectory(prefix="cachecluster-protos-") as scratch:
        fresh = {path.name: path for path in generate(Path(scratch), proto_dir)}
        present = {path.name: path for path in package_dir.iterdir() if is_generated(path)}
        stale = sorted(
            name
            for name in fresh.keys() | present.keys()
            if name not in fresh
            or name not in present
            or not filecmp.cmp(fresh[name], present[name], shallow=False)
        )
        if write:
            for name in stale:
                if name in fresh:
                    shutil.copyfile(fresh[name], package_dir / name)
                else:
                    (package_dir / name).unlink()
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate into this package, or with ``--check`` report stale modules."""
    parser = argparse.ArgumentParser(prog=f"python -m {PACKAGE}.generate")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the committed modules are stale"
    )
    args = parser.parse_args(argv)
    stale = sync(write=not args.check)
    if args.check and stale:
        print(
            f"stale generated modules in {PACKAGE_DIR}: {', '.join(stale)}; "
            f"run python -m {PACKAGE}.generate",
            file=sys.stderr,
        )
        return 1
    if args.check:
        print("generated modules are fresh")
    else:
        print(f"{len(stale)} generated modules updated in {PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
