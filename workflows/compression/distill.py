"""Recover a pruned model's accuracy by distillation: the original teaches, the pruned one learns.

The user's data needs no labels: the teacher's outputs are the targets (softened class scores
through a temperature for classifiers, scale-free squared error for other outputs). Labels, when
the data has them, add a cross-entropy term. Deterministic for a seed on one machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from workflows.data import Dataset
from workflows.metrics import looks_like_class_scores
from workflows.progress import Progress

# (student) -> (gate, figure): the caller's gate on held-out data and one number to plot, where
# higher is better (top-1 with labels, top-1 agreement, or mean SQNR in dB).
Judge = Callable[[Any], tuple[dict[str, Any], float]]


@dataclass(frozen=True)
class Settings:
    """How long and how hard to train."""

    steps: int = 500
    batch_size: int = 32
    learning_rate: float = 1e-3
    temperature: float = 4.0
    label_weight: float = 0.5  # share of the loss given to labels, when the data has them
    eval_every: int = 50
    seed: int = 0


def _loss_terms(teacher: list[np.ndarray]) -> list[str]:
    """Per output: "kl" for class scores, "mse" otherwise."""
    return ["kl" if looks_like_class_scores(t) else "mse" for t in teacher]


def _outputs(module: Any, args: list[Any]) -> list[Any]:
    from workflows.compression.channels import output_tensors

    return output_tensors(module(*args))


def teacher_targets(
    teacher: Any, names: list[str], data: Dataset, batch_size: int = 64
) -> list[np.ndarray]:
    """The teacher's outputs on every sample of `data` (computed once, before training)."""
    from workflows.formats._torch import torch_session
    from workflows.quantization.accuracy import predict

    return predict(torch_session(teacher, names), data, batch_size)


def distill(
    student: Any,
    names: list[str],
    data: Dataset,
    targets: list[np.ndarray],
    judge: Judge,
    settings: Settings,
    progress: Progress,
    figure_name: str = "figure",
) -> dict[str, Any]:
    """Train `student` (in place) towards `targets` on `data`; stop when `judge` passes.

    The student is judged every `eval_every` steps and at the end; the best-judged weights are
    the ones it ends with. Returns the history (for the plot and the report).
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    data = data.in_memory()
    x = {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in data.x.items()}
    kinds = _loss_terms(targets)
    target_t = [torch.from_numpy(np.ascontiguousarray(t)).float() for t in targets]
    scale = [max(float(t.var()), 1e-12) for t in target_t]  # MSE relative to the output's spread
    labels = torch.from_numpy(data.y.astype(np.int64)) if data.y is not None else None
    use_labels = labels is not None and kinds[0] == "kl"
    temperature = settings.temperature
    optimizer = torch.optim.Adam(student.parameters(), lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(settings.steps, 1))
    n, batch = len(data), min(settings.batch_size, len(data))

    history: list[dict[str, Any]] = []
    best = {"figure": -np.inf, "state": None, "step": 0}
    started = time.perf_counter()
    last_report = 0.0
    window: list[float] = []
    last_loss = 0.0
    stopped, reason = 0, "all steps run"

    def evaluate(step: int) -> dict[str, Any]:
        student.eval()
        gate, figure = judge(student)
        point = {
            "step": step,
            "loss": round(float(np.mean(window)), 6) if window else None,
            "figure": round(float(figure), 4),
            "decision": gate["decision"],
        }
        history.append(point)
        progress.publish(
            {"kind": "distill", **point, "steps": settings.steps, "figure_name": figure_name}
        )
        if figure > best["figure"] or gate["decision"] == "pass":
            best.update(figure=figure, step=step, gate=gate,
                        state={k: v.clone() for k, v in student.state_dict().items()})  # fmt: skip
        window.clear()
        return gate

    gate = evaluate(0)
    for step in range(1, settings.steps + 1):
        if gate["decision"] == "pass":
            reason = "the accuracy gate passed"
            break
        student.train()
        idx = torch.from_numpy(rng.choice(n, size=batch, replace=n < batch))
        outs = _outputs(student, [x[name][idx] for name in names])
        loss = torch.zeros(())
        for i, (out, kind) in enumerate(zip(outs, kinds, strict=False)):
            want = target_t[i][idx]
            if kind == "kl":
                loss = loss + F.kl_div(
                    F.log_softmax(out / temperature, 1),
                    F.softmax(want / temperature, 1),
                    reduction="batchmean",
                ) * (temperature**2)
            else:
                loss = loss + F.mse_loss(out, want) / scale[i]
        if use_labels:
            assert labels is not None
            w = settings.label_weight
            loss = (1 - w) * loss + w * F.cross_entropy(outs[0], labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        last_loss = float(loss.detach())
        window.append(last_loss)
        stopped = step
        now = time.perf_counter() - started
        if step % settings.eval_every == 0 or step == settings.steps:
            gate = evaluate(step)
        if now - last_report > 0.25 or step == settings.steps:
            last_report = now
            eta = now / step * (settings.steps - step)
            progress.update(
                step / settings.steps,
                f"Distilling: step {step}/{settings.steps}, loss {last_loss:.4f}"
                f", ~{eta:.0f} s left",
            )
        else:
            progress.check()
    if best["state"] is not None:
        student.load_state_dict(best["state"])
    student.eval()
    return {
        "steps_run": stopped,
        "stopped": reason,
        "best_step": best["step"],
        "seconds": round(time.perf_counter() - started, 2),
        "loss": {"class_scores": "kl", "other": "mse / variance"} if "mse" in kinds else "kl",
        "labels_used": use_labels,
        "samples": n,
        "figure_name": figure_name,
        "history": history,
        "settings": {
            "steps": settings.steps,
            "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate,
            "temperature": settings.temperature,
            "label_weight": settings.label_weight if use_labels else 0.0,
            "eval_every": settings.eval_every,
            "seed": settings.seed,
        },
    }
