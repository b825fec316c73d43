"""TOML files -> validated, typed, immutable objects: devices, model manifests, plans.

Loading never opens a connection. Every problem is a `ConfigError` naming the file, the
key and what is allowed. Relative paths inside a file are relative to that file.
"""

from __future__ import annotations

from harness.config.base import (
    KEY_SYNONYMS,
    NAME_PATTERN,
    LaxPath,
)
from harness.config.devices import (
    ADB_WORKDIR,
    DEFAULT_WORKDIR,
    LOCAL_DEVICE_NAME,
    Device,
    NativeBinary,
    NativeTool,
    PowerSource,
    builtin_local_device,
    load_device,
    load_inventory,
    needed_devices,
    parse_shard,
    select_devices,
    shard_devices,
)
from harness.config.models import (
    EvalSet,
    InputSpec,
    ModelManifest,
    ModelSource,
    Variant,
    load_manifest,
    model_format,
    runtime_for,
)
from harness.config.plans import (
    BUDGET_METRICS,
    TFLITE_DELEGATES,
    Budget,
    Budgets,
    Inputs,
    Measure,
    Plan,
    RuntimeSettings,
    load_budgets,
    load_plan,
    resolve_model,
)

__all__ = [
    "ADB_WORKDIR",
    "BUDGET_METRICS",
    "Budget",
    "Budgets",
    "DEFAULT_WORKDIR",
    "Device",
    "EvalSet",
    "InputSpec",
    "Inputs",
    "KEY_SYNONYMS",
    "LOCAL_DEVICE_NAME",
    "LaxPath",
    "Measure",
    "ModelManifest",
    "ModelSource",
    "NAME_PATTERN",
    "NativeBinary",
    "NativeTool",
    "Plan",
    "PowerSource",
    "RuntimeSettings",
    "TFLITE_DELEGATES",
    "Variant",
    "builtin_local_device",
    "load_budgets",
    "load_device",
    "load_inventory",
    "load_manifest",
    "load_plan",
    "model_format",
    "needed_devices",
    "parse_shard",
    "resolve_model",
    "runtime_for",
    "select_devices",
    "shard_devices",
]
