"""Regenerate the exported server's gRPC modules (server/protos/*_pb2*.py) from its .proto files.

    python scripts/generate_protos.py          # write them
    python scripts/generate_protos.py --check  # exit 1 if the committed ones are out of date

The generated modules are committed: the server image then needs only grpcio and protobuf at
run time (no protoc, no grpcio-tools, no TensorFlow). grpcio-tools is a dev dependency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "resources" / "templates" / "docker"
PROTOS = ROOT / "server" / "protos"


def generate(out: Path) -> list[Path]:
    """Run protoc (grpcio-tools) on every server/protos/*.proto into `out`; the written files."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    sources = sorted(p.relative_to(ROOT).as_posix() for p in PROTOS.glob("*.proto"))
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *sources,
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed ({code})")
    return sorted((out / "server" / "protos").glob("*_pb2*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        written = generate(Path(tmp))
        stale = []
        for path in written:
            target = PROTOS / path.name
            new = path.read_bytes()
            if args.check:
                if not target.exists() or target.read_bytes() != new:
                    stale.append(target.name)
            else:
                target.write_bytes(new)
                print(f"wrote {target.relative_to(ROOT.parents[2])}")
        if stale:
            print(f"out of date: {', '.join(stale)}; run python scripts/generate_protos.py")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
