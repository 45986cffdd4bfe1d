"""Regenerate the committed protobuf modules from their .proto files: the exported server's gRPC
services (resources/templates/docker/server/protos) and the Triton exporter's model configuration
(workflows/exporters/protos).

    python scripts/generate_protos.py          # write them
    python scripts/generate_protos.py --check  # exit 1 if the committed ones are out of date

The generated modules are committed: the server image then needs only grpcio and protobuf at
run time (no protoc, no grpcio-tools, no TensorFlow), and Dockyard only protobuf. grpcio-tools is
a dev dependency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# (the folder protoc sees as the import root, the .proto folder below it, gRPC stubs too)
SETS = [
    (PROJECT / "resources" / "templates" / "docker", Path("server/protos"), True),
    (PROJECT / "workflows" / "exporters", Path("protos"), False),
]


def generate(root: Path, folder: Path, grpc: bool, out: Path) -> list[Path]:
    """Run protoc (grpcio-tools) on every root/folder/*.proto into `out`; the written files."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    sources = sorted(p.relative_to(root).as_posix() for p in (root / folder).glob("*.proto"))
    stubs = [f"--grpc_python_out={out}"] if grpc else []
    code = protoc.main(
        ["protoc", f"-I{root}", f"-I{include}", f"--python_out={out}", *stubs, *sources]
    )
    if code != 0:
        raise SystemExit(f"protoc failed ({code})")
    return sorted((out / folder).glob("*_pb2*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for root, folder, grpc in SETS:
        with tempfile.TemporaryDirectory() as tmp:
            for path in generate(root, folder, grpc, Path(tmp)):
                target = root / folder / path.name
                new = path.read_bytes()
                if args.check:
                    if not target.exists() or target.read_bytes() != new:
                        stale.append(target.name)
                else:
                    target.write_bytes(new)
                    print(f"wrote {target.relative_to(PROJECT)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/generate_protos.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
