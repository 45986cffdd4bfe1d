"""Error types with messages a user can act on: which file, what is wrong, what to do."""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error the engine raises on purpose; its message is shown to the user as is."""


class FormatError(DockyardError):
    """A file is not a model Dockyard can read, or is damaged."""


class UnsafeModelError(FormatError):
    """Loading the file would execute code stored in it; refused unless the user opts in."""


class MissingInputError(DockyardError):
    """A step needs something the user did not give (an input shape, a module file, ...)."""


class ConversionError(DockyardError):
    """A converter failed; the message names the operator or construct where possible."""


class RuntimeLoadError(DockyardError):
    """A runtime (ONNX Runtime, LiteRT, ...) cannot run the model."""


class StepCancelled(DockyardError):
    """The user cancelled the step."""


class StepCrashed(DockyardError):
    """The child process running a step died (segfault, out of memory, killed)."""


class ExportError(DockyardError):
    """An export target could not produce, or could not validate, its artifact."""


class DataError(DockyardError):
    """Calibration, evaluation or input data (or a workflow file) that cannot be used as given."""


class OptionsError(MissingInputError):
    """An option has a wrong type or name; `path` names it (`model.input_shapes.x[1]`)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class FrameworkMissing(DockyardError):
    """A step needs PyTorch or TensorFlow, which this installation (the app's core bundle) has
    not prepared yet; `family` names it ("torch", "tensorflow"; workflows.frameworks)."""

    def __init__(self, message: str, family: str = "") -> None:
        super().__init__(message)
        self.family = family


class OutputExistsError(DockyardError):
    """The output path holds something Dockyard did not make; it is never replaced."""


def first_line(exc: BaseException) -> str:
    """An exception's first line of text, or its type's name when it has none (for messages
    that quote a library's error without its whole traceback text)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
