"""Property-based fuzzing targets (hypothesis) for what reads untrusted bytes (issue #12):

- `decode`: the exported server's request decoding (server/decode.py: strict JSON, v2 and TF
  Serving bodies to tensors): any body gives tensors or a RequestError with a 4xx status;
- `torchserve`: the TorchServe handler's request decoding (preprocess): tensors or a
  PredictionException with a 4xx code, for JSON, text and image bodies;
- `loaders`: format detection and every loader, on mutated copies of real small models (bytes
  flipped, inserted, cut): a model or a DockyardError, and no code from the file ever runs.

`run(target, seconds)` runs one for a time budget, in batches of hypothesis examples with fresh
randomness each; a failure raises hypothesis's minimal failing example. `one_input(target)` is
the same property for atheris (coverage-guided: libFuzzer mutates the bytes hypothesis draws
from). tests/test_fuzz.py runs each for FUZZ_SECONDS (60 in CI) and briefly under atheris;
scripts/fuzz.py runs them longer. A failure found becomes an entry in tests/corpus/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "resources" / "templates"

# -- decode -------------------------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "1e39", "-0", "9" * 30]),
)
JSONISH = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=40,
)
TENSOR = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "image", "", 5, None]),
        "shape": st.one_of(
            st.lists(st.integers(min_value=-3, max_value=2**40), max_size=5),
            JSONISH,
        ),
        "datatype": st.sampled_from(["FP32", "FP16", "INT64", "BOOL", "BYTES", "fp32", 5]),
        "data": st.one_of(st.lists(NUMBERS, max_size=80), JSONISH),
    }
)
V2_BODY = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(TENSOR, max_size=3), JSONISH)},
    optional={"outputs": JSONISH, "id": JSONISH},
)
V1_BODY = st.one_of(
    st.fixed_dictionaries({"instances": st.one_of(st.lists(JSONISH, max_size=4), JSONISH)}),
    st.fixed_dictionaries({"inputs": JSONISH}),
)


def _text(value: Any) -> str:
    """JSON text, with Python's non-standard NaN/Infinity and the sampled tokens as they are."""
    text = json.dumps(value, allow_nan=True)
    for token in ("NaN", "Infinity", "-Infinity", "1e999", "1e39", "-0"):
        text = text.replace(json.dumps(token), token)
    return text


BODIES = st.one_of(
    st.binary(max_size=300),
    V2_BODY.map(_text).map(str.encode),
    V1_BODY.map(_text).map(str.encode),
    JSONISH.map(_text).map(str.encode),
)


@cache
def _server_decode():
    sys.path.insert(0, str(TEMPLATES / "docker"))
    from server import decode

    signature = decode.Signature([decode.TensorInfo("x", "float32", [None, 1, 8, 8])], 64)
    return decode, signature


def decode_target(body: bytes) -> None:
    decode, signature = _server_decode()
    for function in (decode.v2_request, decode.v1_request, decode.any_request):
        try:
            function(body, signature)
        except decode.RequestError as exc:
            assert 400 <= exc.status < 500, exc.status


# -- torchserve ---------------------------------------------------------------------------------
@cache
def _handler():
    # The .mar archives the Docker server's image decoder beside the handler as dockyard_images.
    images = importlib.util.spec_from_file_location(
        "dockyard_images", TEMPLATES / "docker" / "server" / "images.py"
    )
    sys.modules[images.name] = importlib.util.module_from_spec(images)
    images.loader.exec_module(sys.modules[images.name])
    spec = importlib.util.spec_from_file_location(
        "dockyard_fuzz_handler", TEMPLATES / "torchserve" / "handler.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # found there by a fuzzer that instruments it
    spec.loader.exec_module(module)
    handler = module.DockyardHandler()
    handler.config = {
        "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 1, 8, 8]}],
        "preprocess": {
            "channels": "L",
            "scale": 1 / 255,
            "mean": [0.0],
            "std": [1.0],
            "layout": "NCHW",
            "size": [8, 8],
        },
    }
    handler.model_dir = str(TEMPLATES / "docker" / "server")  # dockyard_images is loaded above
    handler.inputs = handler.config["inputs"]
    handler.max_batch = module.MAX_BATCH
    handler.max_pixels = module.MAX_IMAGE_PIXELS
    return handler


def _png(width: int, height: int, data: bytes) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(data))


TS_BODIES = st.one_of(
    BODIES,
    BODIES.map(lambda b: b.decode("utf-8", "replace")),  # TorchServe decodes text/* bodies
    V2_BODY.map(lambda v: json.loads(json.dumps(v, allow_nan=True))),  # its own JSON parse
    st.builds(
        _png,
        st.integers(min_value=0, max_value=70_000),
        st.integers(min_value=0, max_value=70_000),
        st.binary(max_size=200),
    ),
)


def torchserve_target(body: Any) -> None:
    from ts.utils.util import PredictionException

    try:
        _handler().preprocess([{"body": body}])
    except PredictionException as exc:
        assert 400 <= exc.error_code < 500, exc.error_code


# -- loaders ------------------------------------------------------------------------------------
@cache
def _seeds() -> dict[str, bytes]:
    """Real small models of each format (made once), whose mutations the loader target reads."""
    from tests.workflows import model_factory as mf

    with tempfile.TemporaryDirectory(prefix="dockyard-fuzz-seeds-") as tmp:
        folder = Path(tmp)
        made = {
            ".onnx": mf.save_onnx(folder),
            ".pt2": ROOT / "resources" / "sample" / "digits_cnn.pt2",
            ".pt": mf.save_torchscript(folder),
            ".pth": mf.save_state_dict(folder)[0],
            ".safetensors": ROOT / "resources" / "sample" / "digits_cnn.safetensors",
            ".keras": mf.save_keras(folder),
            ".tflite": mf.save_tflite(folder),
        }
        return {suffix: path.read_bytes() for suffix, path in made.items()}


# What a loader may take: a mutant asking for more is refused like one asking for more than a
# machine has (the fuzzers run under 4 GB: atheris's -rss_limit_mb, and CI machines).
FUZZ_MEMORY_BUDGET = 2 * 2**30


@contextlib.contextmanager
def _memory_budget(limit: int):
    from workflows import machine

    real = machine.available_memory
    machine.available_memory = lambda: min(real(), limit)
    try:
        yield
    finally:
        machine.available_memory = real


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "cut", "zero"]),
        st.floats(min_value=0, max_value=1),
        st.binary(min_size=1, max_size=8),
    ),
    min_size=1,
    max_size=4,
)


def loaders_target(case: tuple[str, list]) -> None:
    from tests.corpus.model_recipes import MARKER, mutate
    from workflows.errors import DockyardError
    from workflows.formats import load_model
    from workflows.steps.inspect import inspect_model

    suffix, edits = case
    with tempfile.TemporaryDirectory(prefix="dockyard-fuzz-") as tmp:
        folder = Path(tmp)
        path = folder / f"mutant{suffix}"
        path.write_bytes(mutate(_seeds()[suffix], edits))
        options: dict[str, Any] = {"input_shapes": {"x": [1, 3, 8, 8]}}
        if suffix == ".pth":
            from tests.workflows import model_factory as mf

            options["model_file"] = mf.torch_module(folder)[1]
        elif suffix == ".safetensors":
            options["model_file"] = ROOT / "resources" / "sample" / "digits_cnn.py"
            options["input_shapes"] = {"x": [1, 1, 8, 8]}
        Path(tempfile.gettempdir(), "dockyard-fuzz-last.txt").write_text(repr(case))
        with contextlib.suppress(DockyardError), _memory_budget(FUZZ_MEMORY_BUDGET):
            inspect_model(load_model(path, **options))
        assert not (folder / MARKER).exists()


TARGETS: dict[str, tuple[Callable[[Any], None], Any]] = {
    "decode": (decode_target, BODIES),
    "torchserve": (torchserve_target, TS_BODIES),
    "loaders": (loaders_target, None),  # its strategy needs the seeds: made on first use
}


def strategy(name: str):
    target, found = TARGETS[name]
    if found is None:
        found = st.tuples(st.sampled_from(sorted(_seeds())), MUTATIONS)
    return target, found


def run(name: str, seconds: float, batch: int = 50) -> int:
    """Run target `name` for `seconds`; the number of examples tried. Raises on a failure."""
    target, examples = strategy(name)
    count = [0]

    def counted(value: Any) -> None:
        count[0] += 1
        target(value)

    test = settings(
        max_examples=batch,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )(given(examples)(counted))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        test()
    return count[0]


def one_input(name: str) -> Callable[[bytes], None]:
    """Target `name` as a function of raw bytes, for a coverage-guided fuzzer (atheris): hypothesis
    turns the fuzzer's bytes into an example, so both engines fuzz the same properties."""
    target, examples = strategy(name)
    test = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))(
        given(examples)(target)
    )
    return test.hypothesis.fuzz_one_input


def warm_up(name: str) -> None:
    """Import (and make) what target `name` reads, so that a fuzzer instrumenting the imports
    made inside its `instrument_imports` block sees that code."""
    if name == "decode":
        _server_decode()
    elif name == "torchserve":
        _handler()
    else:
        import pkgutil

        import workflows.formats
        import workflows.steps.inspect

        for module in pkgutil.iter_modules(workflows.formats.__path__, "workflows.formats."):
            importlib.import_module(module.name)
        _seeds()


if __name__ == "__main__":  # a quick look: python -m tests.fuzz_targets decode 10
    print(run(sys.argv[1], float(sys.argv[2])), "examples")
