"""KServe's own schema for an InferenceService manifest: the field names, types and required
fields of the `kserve` package's generated models (V1beta1InferenceService and everything under
it), with the Kubernetes types they embed (V1ObjectMeta, V1Container, ...) checked against
Kubernetes' own OpenAPI schemas (kubernetes-validate's, strict).

The models are imported from a bare `kserve` package object: they need only six and urllib3,
while `kserve/__init__.py` starts importing KServe's model server (fastapi, ray, ...), which is
not installed here (the package is a --no-deps test client, tests/clients.txt).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import types
from typing import Any

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def _models() -> types.ModuleType:
    if "kserve.models" not in sys.modules:
        spec = importlib.util.find_spec("kserve")  # located, not imported
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                "kserve is not installed (pip install --no-deps -r tests/clients.txt)"
            )
        package = types.ModuleType("kserve")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules.setdefault("kserve", package)
    return importlib.import_module("kserve.models")


class _Kubernetes:
    """Kubernetes' own types by OpenAPI name, checked with kubernetes-validate's schemas."""

    def __init__(self) -> None:
        import kubernetes_validate as kv
        from kubernetes_validate.utils import schema_contents
        from referencing import Registry, Resource

        version = kv.utils.latest_version()
        folder = f"kubernetes-json-schema/v{kv.utils.all_versions()[-1]}-local-strict"
        self.definitions = schema_contents(f"{folder}/_definitions.json", version)
        self.registry = Resource.from_contents(self.definitions) @ Registry()

    def check(self, type_name: str, value: Any, where: str) -> list[str]:
        import jsonschema

        kind = type_name.removeprefix("V1")
        found = [k for k in self.definitions["$defs"] if k.endswith(f".v1.{kind}")]
        if len(found) != 1:
            return [f"{where}: no single Kubernetes definition for {type_name} ({found})"]
        schema = {"$ref": f"{self.definitions['$id']}#/$defs/{found[0]}"}
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
        return [
            f"{'.'.join([where, *map(str, e.path)])}: {e.message}"
            for e in validator.iter_errors(value)
        ]


def problems(document: dict[str, Any]) -> list[str]:
    """Everything in `document` that KServe's InferenceService schema does not allow: unknown
    fields, wrong types, missing required fields. Empty: it is a valid InferenceService."""
    models = _models()
    kubernetes = _Kubernetes()
    found: list[str] = []

    def check(type_name: str, value: Any, where: str) -> Any:
        if type_name.startswith("list["):
            if not isinstance(value, list):
                found.append(f"{where}: expected a list, got {type(value).__name__}")
                return value
            return [check(type_name[5:-1], v, f"{where}[{i}]") for i, v in enumerate(value)]
        mapping = re.fullmatch(r"dict\(str, (.+)\)", type_name)
        if mapping:
            if not isinstance(value, dict):
                found.append(f"{where}: expected a mapping, got {type(value).__name__}")
                return value
            return {k: check(mapping.group(1), v, f"{where}.{k}") for k, v in value.items()}
        if type_name in PRIMITIVES:
            if not isinstance(value, PRIMITIVES[type_name]) or (
                type_name in ("int", "float") and isinstance(value, bool)
            ):
                found.append(f"{where}: expected {type_name}, got {value!r}")
            return value
        cls = getattr(models, type_name, None)
        if cls is None:  # a Kubernetes type KServe embeds
            found.extend(kubernetes.check(type_name, value, where))
            return value
        if not isinstance(value, dict):
            found.append(f"{where}: expected a {type_name} mapping, got {value!r}")
            return value
        by_key = {key: attr for attr, key in cls.attribute_map.items()}
        kwargs = {}
        for key, item in value.items():
            if key not in by_key:
                found.append(f"{where}.{key}: not a field of KServe's {type_name}")
                continue
            attr = by_key[key]
            kwargs[attr] = check(cls.openapi_types[attr], item, f"{where}.{key}")
        try:
            cls(**kwargs)  # the generated setters refuse missing required fields and bad enums
        except (ValueError, TypeError) as exc:
            found.append(f"{where}: {exc}")
        return value

    check("V1beta1InferenceService", document, "InferenceService")
    return found
