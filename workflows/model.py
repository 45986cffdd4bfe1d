"""The uniform description of a loaded model, whatever its format.

`Model` carries what every step needs to know (format, I/O signature, size, parameters) and a
`native` handle to the framework object, which stays in the process that loaded it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Dim = int | str | None
"""A tensor dimension: a fixed size, a symbolic name ("batch", "s0") or unknown (None)."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (with symbolic dims) and numpy dtype name of one model input or output."""

    name: str
    shape: tuple[Dim, ...] | None
    dtype: str

    def describe(self) -> str:
        """`name: float32[batch, 1, 8, 8]`, the way Netron writes it."""
        if self.shape is None:
            return f"{self.name}: {self.dtype}[?]"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"

    def is_dynamic(self, axis: int = 0) -> bool:
        """True when `axis` is symbolic or unknown (for example a dynamic batch)."""
        return (
            self.shape is not None
            and len(self.shape) > axis
            and not isinstance(self.shape[axis], int)
        )


@dataclass
class Model:
    """A loaded model. `native` is the framework object; everything else is plain data."""

    format: str
    framework: str
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    size_bytes: int
    parameters: int | None = None
    producer: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    native: Any = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """A short name for folders and reports: the file name without its suffix."""
        return model_name(self.path)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable description (no framework objects; shapes as lists)."""
        from workflows.jsonable import jsonable

        return jsonable(
            {
                "format": self.format,
                "framework": self.framework,
                "path": str(self.path),
                "inputs": [asdict(t) for t in self.inputs],
                "outputs": [asdict(t) for t in self.outputs],
                "size_bytes": self.size_bytes,
                "parameters": self.parameters,
                "producer": self.producer,
                "metadata": self.metadata,
            }
        )


def model_name(path: str | Path) -> str:
    """The one rule for a model's short name (run folders, exports, reports): the file name
    without its last suffix ("resnet-v1.7.onnx" -> "resnet-v1.7"), a folder's own name."""
    path = Path(path)
    return path.stem if path.suffix else path.name


def path_size(path: Path) -> int:
    """Bytes on disk of a file, or of every file below a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
