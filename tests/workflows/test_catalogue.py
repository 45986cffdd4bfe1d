"""The step catalogue: every entry resolves, and options are built and type-checked from it."""

from __future__ import annotations

import dataclasses

import pytest

from workflows import catalogue, planner
from workflows.errors import MissingInputError, OptionsError
from workflows.options import Options, describe, from_dict
from workflows.runner import resolve
from workflows.steps.quantize import QuantizeOptions


@pytest.mark.parametrize("name", list(catalogue.STEPS))
def test_every_entry_imports_and_builds_default_options(name):
    spec = catalogue.spec(name)
    assert callable(spec.run_function())
    assert resolve(name) is spec.run_function()
    cls = spec.options_class()
    assert issubclass(cls, Options)
    options = cls()  # every option has a default
    for f in dataclasses.fields(cls):
        assert f.metadata.get("description"), f"{name}.{f.name} has no description"
    if spec.plan:
        # what the planner derives are real options of the step
        assert planner.derived(name) <= {f.name for f in dataclasses.fields(options)}


def test_unknown_step_lists_the_known_ones():
    with pytest.raises(MissingInputError, match=r"unknown step .transmogrify.*convert"):
        catalogue.spec("transmogrify")


def test_workflow_steps_and_targets_come_from_the_catalogue():
    # In the order the wizard runs them: prune and edit before quantize (which then takes the
    # pruned, edited model).
    assert catalogue.workflow_steps()[:5] == ["convert", "validate", "prune", "edit", "quantize"]
    assert "inspect" not in catalogue.workflow_steps()
    assert list(catalogue.export_targets()) == [
        "docker", "torchserve", "tflite", "triton", "tfserving"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "data,path",
    [
        ({"model": {"path": "m", "input_shapes": {"x": [1, "a"]}}}, r"model\.input_shapes\.x\[1\]"),
        ({"max_accuracy_drop": "one"}, "max_accuracy_drop: expected a number"),
        ({"modes": "static"}, "modes: expected a list"),
        ({"preprocess": {"size": [8, None]}}, r"preprocess\.size\[1\]: expected an integer"),
        ({"preprocess": {"colour": "RGB"}}, r"preprocess: unknown option\(s\) \['colour'\]"),
        ({"per_channel": "yes"}, "per_channel: expected true or false"),
        ({"calibration_samples": 1.5}, "calibration_samples: expected an integer"),
        ({"model": 3}, "model: expected a mapping of options"),
    ],
)
def test_typed_loader_names_the_field(data, path):
    with pytest.raises(OptionsError, match=path):
        from_dict(QuantizeOptions, data)


def test_typed_loader_builds_nested_options():
    q = from_dict(
        QuantizeOptions,
        {"model": {"path": "m.onnx"}, "max_accuracy_drop": 2, "preprocess": {"size": [8, 8]}},
    )
    assert q.model.path == "m.onnx" and q.model.dynamic_batch is True
    assert q.max_accuracy_drop == 2.0 and isinstance(q.max_accuracy_drop, float)
    assert q.preprocess.size == [8, 8] and q.preprocess.layout == "NCHW"
    # None for a recipe means the declared default, as before
    assert QuantizeOptions(preprocess=None).preprocess == QuantizeOptions().preprocess


def test_describe_reads_the_declaration():
    default, text = describe(QuantizeOptions, "max_accuracy_drop")
    assert default == 1.0 and "points" in text
