"""A Qt-free progress and cancel object that every step receives.

A step calls `progress.update(fraction, message)` at its milestones and `progress.check()` where
it can stop safely; the GUI and the CLI adapt it to a progress bar, the child-process runner
streams it to the parent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from workflows.errors import StepCancelled

ProgressCallback = Callable[[float, str], None]
DataCallback = Callable[[dict[str, Any]], None]


class Progress:
    """Reports progress through a callback and answers "was I asked to stop?"."""

    def __init__(
        self, callback: ProgressCallback | None = None, on_data: DataCallback | None = None
    ) -> None:
        self._callback = callback
        self._on_data = on_data
        self._cancel = threading.Event()
        self.fraction = 0.0
        self.message = ""

    def update(self, fraction: float, message: str = "") -> None:
        """Record that `fraction` (0..1) of the work is done; raises StepCancelled if asked to stop."""
        self.fraction = min(max(fraction, 0.0), 1.0)
        self.message = message or self.message
        if self._callback is not None:
            self._callback(self.fraction, self.message)
        self.check()

    def publish(self, data: dict[str, Any]) -> None:
        """Hand partial results to whoever watches live (the GUI's plots); JSON-serialisable."""
        if self._on_data is not None:
            self._on_data(data)

    def cancel(self) -> None:
        """Ask the step to stop at its next check."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise StepCancelled if cancellation was requested."""
        if self._cancel.is_set():
            raise StepCancelled("cancelled by the user")

    def scaled(self, start: float, end: float) -> Progress:
        """A child Progress whose 0..1 maps onto start..end of this one (shares cancellation)."""
        child = Progress(lambda f, m: self.update(start + (end - start) * f, m), self.publish)
        child._cancel = self._cancel
        return child


def null_progress() -> Progress:
    """A Progress that reports nowhere."""
    return Progress()
