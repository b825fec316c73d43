"""Compression strategies: turn a base model into variants, cached by what they depend on.

Each strategy is a function `build(base, out, params, context) -> dict` (the dict is its
report: what it did, e.g. sparsity reached, layers left alone) with a pydantic model of
its parameters. A built variant lives at
`<cache>/<model>/<variant>-<key>.onnx` with `<...>.json` beside it, where `key` hashes the
base model's sha256, the strategy, its parameters and the versions of the tools used — so
a nightly run rebuilds nothing that has not changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.compress.base import BuildContext, CompressionFailed, Strategy
from harness.config import ModelManifest, Variant, model_format
from harness.errors import ConfigError
from harness.jobs import VariantFile

__all__ = [
    "BuildContext",
    "BuiltVariant",
    "CompressionFailed",
    "Strategy",
    "build_all",
    "build_variant",
]

COMPRESS_VERSION = "1"  # bump when a strategy's output changes for the same inputs
TOOLS = ("onnx", "onnxruntime", "onnxconverter-common", "numpy")


@dataclass(frozen=True)
class BuiltVariant:
    variant: str
    strategy: str
    path: Path
    report: dict[str, Any]
    cached: bool


def strategies() -> dict[str, Strategy]:
    """Every built-in strategy by name (imports its module on first use)."""
    from harness.compress import fp16, lowrank, prune, quantize

    return {
        s.name: s
        for s in (
            fp16.STRATEGY,
            quantize.DYNAMIC,
            quantize.STATIC,
            prune.UNSTRUCTURED,
            prune.STRUCTURED,
            lowrank.STRATEGY,
        )
    }


def validate_params(manifest: ModelManifest, variant: Variant) -> BaseModel:
    strategy = strategies()[variant.strategy]
    try:
        return strategy.params.model_validate(variant.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        allowed = ", ".join(strategy.params.model_fields)
        raise ConfigError(
            manifest.manifest_path or manifest.name,
            f"variant '{variant.name}' ({variant.strategy}): {first['msg']}; "
            f"parameters of {variant.strategy}: {allowed}",
            f"variants.{variant.name}.params.{key}",
        ) from None


def cache_key(base_sha256: str, strategy: str, params: BaseModel) -> str:
    versions = {tool: _version(tool) for tool in TOOLS}
    payload = json.dumps(
        {
            "base": base_sha256,
            "strategy": strategy,
            "params": params.model_dump(mode="json"),
            "tools": versions,
            "compress": COMPRESS_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_variant(
    manifest: ModelManifest, variant: Variant, cache_dir: Path, context: BuildContext
) -> BuiltVariant:
    """The variant's file, from the cache when its key matches, else built now."""
    if variant.strategy in ("fp32", "external"):
        assert variant.file is not None
        return BuiltVariant(variant.name, variant.strategy, variant.file, {}, cached=True)
    if model_format(manifest.file) != "onnx":
        raise CompressionFailed(
            f"{manifest.name}/{variant.name}: strategy '{variant.strategy}' works on ONNX "
            f"models and {manifest.file.name} is TFLite; convert it with your TensorFlow "
            "toolchain and register the result as an 'external' variant"
        )
    params = validate_params(manifest, variant)
    base_sha = hashlib.sha256(manifest.file.read_bytes()).hexdigest()
    key = cache_key(base_sha, variant.strategy, params)
    folder = cache_dir / manifest.name
    target = folder / f"{variant.name}-{key}.onnx"
    report_path = target.with_suffix(".json")
    if target.is_file() and report_path.is_file():
        return BuiltVariant(
            variant.name, variant.strategy, target, json.loads(report_path.read_text()), True
        )
    folder.mkdir(parents=True, exist_ok=True)
    strategy = strategies()[variant.strategy]
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        out = Path(tmp) / target.name
        try:
            report = strategy.build(manifest.file, out, params, context)
        except CompressionFailed:
            raise
        except Exception as exc:  # a tool's own error: the reason the strategy cannot apply
            raise CompressionFailed(
                f"{manifest.name}/{variant.name}: {variant.strategy} failed: "
                f"{type(exc).__name__}: {str(exc)[:400]}"
            ) from exc
        report = {
            "strategy": variant.strategy,
            "params": params.model_dump(mode="json"),
            "base_sha256": base_sha,
            "bytes": out.stat().st_size,
            **report,
        }
        report_tmp = Path(tmp) / "report.json"
        report_tmp.write_text(json.dumps(report, indent=1))
        os.replace(out, target)
        os.replace(report_tmp, report_path)
    return BuiltVariant(variant.name, variant.strategy, target, report, cached=False)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def build_all(
    manifests: list[ModelManifest],
    selected: list[str] | None,
    cache_dir: Path,
    context_for: Callable[[ModelManifest], BuildContext],
    log: Callable[[str], None] = lambda message: None,
) -> dict[tuple[str, str], VariantFile]:
    """Every selected variant of every manifest, built or from the cache. Bad parameters
    raise ConfigError before anything is built; a strategy that cannot apply becomes that
    variant's error and the others go on."""
    chosen = [
        (manifest, variant)
        for manifest in manifests
        for variant in manifest.all_variants()
        if selected is None or variant.name in selected
    ]
    for manifest, variant in chosen:
        if variant.strategy not in ("fp32", "external"):
            validate_params(manifest, variant)
    files = {}
    for manifest, variant in chosen:
        try:
            built = build_variant(manifest, variant, cache_dir, context_for(manifest))
        except CompressionFailed as exc:
            log(f"cannot build {manifest.name}/{variant.name}: {exc}")
            files[(manifest.name, variant.name)] = VariantFile(None, error=str(exc))
            continue
        if not built.cached:
            log(f"built {manifest.name}/{variant.name} ({variant.strategy}) -> {built.path.name}")
        files[(manifest.name, variant.name)] = VariantFile(built.path, built.report)
    return files
