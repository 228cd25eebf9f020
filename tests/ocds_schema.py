"""The OCDS 1.1.5 schema with the bids and lots extensions, as a local validator (no network)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent / "data" / "ocds"
RELEASE_URI = "https://standard.open-contracting.org/schema/1__1__5/release-schema.json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch: how OCDS applies an extension's release-schema.json."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def load_schema(name: str) -> Any:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def package_validator() -> Draft4Validator:
    release = load_schema("release-schema.json")
    for extension in ("bid-extension-release-schema.json", "lots-extension-release-schema.json"):
        release = merge_patch(release, load_schema(extension))
    package = load_schema("release-package-schema.json")
    # Only this one resource: anything else the schemas referred to would fail, never be fetched.
    registry: Registry = Registry().with_resource(RELEASE_URI, Resource.from_contents(release))
    # Without rfc3339-validator, jsonschema silently skips "format": "date-time": say so instead.
    assert "date-time" in Draft4Validator.FORMAT_CHECKER.checkers, "install rfc3339-validator (the test extras)"
    Draft4Validator.check_schema(package)
    Draft4Validator.check_schema(release)
    return Draft4Validator(package, registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER)


def errors(validator: Draft4Validator, package: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(package)]
