"""The one export sequence every target shares, and the one way to get a model as ONNX.

load → name → folders (scratch + atomic output) → stage (per target) → validate (per target,
mandatory) → describe (per target) → manifest.json → file list → atomic rename. A target is a
subclass of `Exporter` with its three hooks, plus a catalogue line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from workflows.atomic import atomic_dir, check_replaceable, scratch_dir
from workflows.errors import ExportError
from workflows.exporters.common import export_step, safe_name, write_manifest
from workflows.model import Model
from workflows.progress import Progress, null_progress


def ensure_onnx(
    model: Model, work: Path, opset: int, progress: Progress, converted: str | None = None
) -> tuple[Path, list[dict[str, Any]]]:
    """The model as an ONNX file (its own, the `converted` one a convert step made, or
    converted into `work`) and the steps that took."""
    if model.format == "onnx":
        return model.path, []
    if converted and Path(converted).is_file():
        import onnx

        from workflows.formats.onnx_format import default_opset

        proto = onnx.load(converted, load_external_data=False)
        step = {
            "step": "convert",
            "target": "onnx",
            "opset": default_opset(proto),
            "nodes": len(proto.graph.node),
            "reused": Path(converted).name,  # the workflow's convert step's output
        }
        return Path(converted), [step]
    from workflows.steps.convert import convert_model

    out = work / "model.onnx"
    facts = convert_model(model, out, opset=opset, progress=progress)
    step = {
        "step": "convert",
        "target": "onnx",
        "opset": opset,
        "nodes": facts["nodes_after"],
        "simplified": facts["simplified"],
    }
    return out, [step]


@dataclass
class Exporter:
    """One export target. `export()` runs the shared sequence around the three hooks.

    Hooks see the options (`opts`), the loaded source (`model`), the artifact's `name`, a scratch
    folder (`work`, never shipped) and the folder being written (`out`, renamed into place only
    when everything passed). `steps` collects what was done to the model, for the manifest.
    """

    target: ClassVar[str]
    opts: Any
    model: Model
    name: str
    work: Path
    out: Path
    progress: Progress
    steps: list[dict[str, Any]] = field(default_factory=list)
    _onnx: Path | None = None
    early: Any = None  # what `start_early` started, handed to the hooks

    def onnx(self, progress: Progress | None = None) -> Path:
        """The source as ONNX (converted once, into the scratch folder, when it is not)."""
        if self._onnx is None:
            self._onnx, steps = ensure_onnx(
                self.model,
                self.work,
                self.opts.opset,
                progress or self.progress,
                getattr(self.opts, "converted", None),
            )
            self.steps.extend(steps)
        return self._onnx

    @classmethod
    def start_early(cls, opts: Any, work: Path) -> Any:
        """Start work that needs no loaded model (a converter subprocess), so the model loads
        beside it; returned to the hooks as `self.early`, `close()`d at the end. None: nothing."""
        return None

    @classmethod
    def check(cls, opts: Any, model: Model) -> None:
        """Refuse a source this target cannot take, before anything is written."""

    @classmethod
    def artifact_name(cls, opts: Any, model: Model) -> str:
        """The name the artifact serves the model under (URLs, Kubernetes objects)."""
        return safe_name(opts.name or model.name)

    def stage(self) -> None:
        """Write the artifact into `out`."""
        raise NotImplementedError

    def validate(self) -> dict[str, Any]:
        """Check what `stage` wrote (serve it, run it) against the original; mandatory.

        Raise ExportError when it fails; the figures go into the manifest and the result."""
        raise NotImplementedError

    def describe(self, validation: dict[str, Any]) -> tuple[dict | None, dict, dict]:
        """(manifest "sample", extra manifest fields, extra result fields)."""
        return None, {}, {}

    @classmethod
    def export(cls, opts: Any, progress: Progress | None = None) -> dict[str, Any]:
        """Write `opts.output` atomically; returns what was made and measured."""
        progress = progress or null_progress()
        if not opts.output:
            raise ExportError(f"export {cls.target}: give an output folder (-o DIR)")
        out_path = Path(opts.output)
        check_replaceable(out_path)  # before any work: a user's folder is never replaced
        with scratch_dir(out_path) as work:
            early = cls.start_early(opts, work)
            try:
                progress.update(0.02, f"Loading {opts.model.path}")
                model = opts.model.load()
                cls.check(opts, model)
                name = cls.artifact_name(opts, model)
                with atomic_dir(out_path) as out:
                    exporter = cls(opts, model, name, work, out, progress, early=early)
                    exporter.stage()
                    validation = exporter.validate()
                    sample, extra, result = exporter.describe(validation)
                    manifest = write_manifest(
                        out,
                        target=cls.target,
                        source=model.path,
                        source_format=model.format,
                        steps=[*exporter.steps, export_step(cls.target, opts)],
                        sample=sample,
                        validation=validation,
                        extra=extra,
                    )
            finally:
                if early is not None:
                    early.close()
        progress.update(1.0, f"Wrote {out_path}")
        files = sorted(str(p.relative_to(out_path)) for p in out_path.rglob("*") if p.is_file())
        return {
            "step": "export",
            "target": cls.target,
            "output": str(out_path),
            "model_name": name,
            **result,
            "files": files,
            "manifest": manifest,
        }
