"""Compression strategies: turn a base model into variants, cached by what they depend on.

Each strategy is a function `build(base, out, params, context) -> dict` (the dict is its
report: what it did, e.g. sparsity reached, layers left alone) with a pydantic model of
its parameters: onnxruntime.quantization, onnxconverter-common and our own graph edits for
ONNX bases; ai-edge-quantizer for TFLite (`tflite.py`). Every strategy starts from the
prepared base (`prepare.py`), and every variant it builds is verified before it counts
(`verify.py`: it loads, runs once, and changed what the strategy claims; else `NoEffect`).
A built variant lives at `<cache>/<model>/<variant>-<key>.<onnx|tflite>` with its report
beside it, where `key` hashes everything that changes its bytes (`cache_key`) — so a
nightly run rebuilds nothing that has not changed, and never reuses a stale variant.
"""

from __future__ import annotations

import functools
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

from harness.compress.base import (
    RANDOM_CALIBRATION,
    BuildContext,
    CompressionFailed,
    Strategy,
    calibration_file,
    library_output_to,
    sample_inputs,
)
from harness.compress.isolated import base_problem, build_isolated
from harness.compress.prepare import prepare_base
from harness.compress.verify import (
    NoEffect,
    already_quantized,
    effect,
    model_counts,
    runs_once,
)
from harness.config import ModelManifest, Variant
from harness.errors import ConfigError
from harness.jobs import VariantFile, VariantReport
from harness.runner.runtimes import integer_inputs_hint

__all__ = [
    "BuildContext",
    "BuiltVariant",
    "CompressionFailed",
    "NoEffect",
    "Strategy",
    "build_all",
    "build_variant",
]

COMPRESS_VERSION = "2"  # bump when a strategy's output changes for the same inputs
# 2: strategies start from the prepared base (harness/compress/prepare.py)
TOOLS = (
    "onnx",
    "onnxruntime",
    "onnxconverter-common",
    "ai-edge-quantizer",
    "ai-edge-litert",
    "numpy",
)


@dataclass(frozen=True)
class BuiltVariant:
    variant: str
    strategy: str
    path: Path
    report: VariantReport
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


TFLITE_STRATEGIES = ("fp16", "int8-weight-only", "int8-dynamic", "int8-static")


def strategy_for(manifest: ModelManifest, name: str) -> Strategy:
    """The build of strategy `name` for this manifest's format: onnxruntime.quantization,
    onnxconverter-common and our own graph edits for ONNX; ai-edge-quantizer for TFLite."""
    from harness.compress import tflite

    if manifest.format == "tflite":
        if name not in TFLITE_STRATEGIES:
            raise CompressionFailed(
                f"'{name}' works on ONNX models; a TFLite model takes "
                f"{', '.join(TFLITE_STRATEGIES)} (ai-edge-quantizer), or an 'external' variant"
            )
        build = functools.partial(tflite.build, name)
        return Strategy(
            name, tflite.TFLiteParams, build, "ai-edge-quantizer", name == "int8-static"
        )
    if name not in strategies():
        raise CompressionFailed(
            f"'{name}' is for TFLite models; for ONNX use int8-dynamic (int8 weights)"
        )
    return strategies()[name]


def validate_params(manifest: ModelManifest, variant: Variant) -> BaseModel | None:
    """The variant's parameters as its strategy's model; None for a strategy that does not
    apply to the base's format (said when the variant is built, beside the others)."""
    try:
        strategy = strategy_for(manifest, variant.strategy)
    except CompressionFailed:
        return None
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


def tool_versions() -> dict[str, str | None]:
    return {tool: _version(tool) for tool in TOOLS}


def cache_key(base_sha256: str, strategy: str, params: BaseModel, inputs: dict[str, Any]) -> str:
    """Everything that changes a variant's bytes: the base, the strategy and its
    parameters, the tools' versions, and for a calibrated strategy its sample inputs (the
    calibration file's hash, the plan's dims, the manifest's input specs, the seed)."""
    payload = json.dumps(
        {
            "base": base_sha256,
            "strategy": strategy,
            "params": params.model_dump(mode="json"),
            "tools": tool_versions(),
            "compress": COMPRESS_VERSION,
            "inputs": inputs,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def sample_source(context: BuildContext) -> VariantReport:
    """What a calibrated strategy's samples are made from, as the cache key sees it."""
    manifest = context.manifest
    found = calibration_file(manifest)
    if found is not None:
        _, data, keys, whole = found
        return {
            "file_sha256": hashlib.sha256(data.read_bytes()).hexdigest(),
            "inputs": keys,
            "whole": whole,
        }
    return {"dims": context.dims, "specs": manifest.input_specs(), "seed": context.seed}


def build_variant(
    manifest: ModelManifest, variant: Variant, cache_dir: Path, context: BuildContext
) -> BuiltVariant:
    """The variant's file, from the cache when its key matches, else built now from the
    prepared base and verified (harness/compress/verify.py) before it counts."""
    if variant.strategy in ("fp32", "external"):
        assert variant.file is not None
        return BuiltVariant(variant.name, variant.strategy, variant.file, {}, cached=True)
    where = f"{manifest.name}/{variant.name}"
    try:
        strategy = strategy_for(manifest, variant.strategy)
    except CompressionFailed as exc:
        raise CompressionFailed(f"{where}: {exc}") from None
    params = validate_params(manifest, variant)
    assert params is not None  # strategy_for above raised for a strategy that does not apply
    base_sha = hashlib.sha256(manifest.file.read_bytes()).hexdigest()
    inputs = sample_source(context) if strategy.calibrated else {}
    key = cache_key(base_sha, variant.strategy, params, inputs)
    folder = cache_dir / manifest.name
    target = folder / f"{variant.name}-{key}{manifest.file.suffix}"
    report_path = target.with_suffix(".json")
    if target.is_file() and report_path.is_file():
        return BuiltVariant(
            variant.name, variant.strategy, target, json.loads(report_path.read_text()), True
        )
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with (
            library_output_to(library_log(cache_dir), f"{where} ({variant.strategy})"),
            tempfile.TemporaryDirectory(dir=folder) as tmp,
        ):
            prepared = prepare_base(manifest.file, folder, base_sha, tool_versions())
            float16_weights = prepared.report.get("float16_weights_unfolded")
            if variant.strategy == "fp16" and float16_weights:
                raise NoEffect(
                    f"no effect: the model as given already stores its {float16_weights} "
                    "weights as float16 (its fp32 variant is that file)"
                )
            out = Path(tmp) / target.name
            already_quantized(variant.strategy, model_counts(prepared.path))
            try:
                report = strategy.build(prepared.path, out, params, context)
            except CompressionFailed:
                raise
            except Exception as exc:  # a tool's own error: the reason the strategy cannot apply
                raise CompressionFailed(
                    f"{variant.strategy} failed: {type(exc).__name__}: {str(exc)[:400]}"
                ) from exc
            base_counts = model_counts(prepared.path)
            found = effect(variant.strategy, base_counts, model_counts(out))
            [feed], inputs_used = sample_inputs(prepared.path, context, 1)
            seeded = [(name, str(a.dtype), list(a.shape)) for name, a in feed.items()]
            hint = "" if manifest.eval else integer_inputs_hint(seeded, manifest.input_specs())
            runs_once(out, feed, base_counts["control_flow_ops"] > 0, hint)
            report = {
                "strategy": variant.strategy,
                "params": params.model_dump(mode="json"),
                "base_sha256": base_sha,
                "bytes": out.stat().st_size,
                **report,
                "prepared": prepared.report,
                "effect": found,
                "verified": f"loads and runs one inference on the controller ({inputs_used})",
            }
            report_tmp = Path(tmp) / "report.json"
            report_tmp.write_text(json.dumps(report, indent=1))
            os.replace(out, target)
            os.replace(report_tmp, report_path)
    except NoEffect as exc:
        raise NoEffect(f"{where}: {exc}") from None
    except CompressionFailed as exc:
        raise CompressionFailed(f"{where}: {exc}") from None
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
    for manifest in manifests:
        if not manifest.variants:
            log(
                f"{manifest.name} declares no [[variants]]: only its fp32 file is measured. "
                f"Add them to {manifest.manifest_path or 'its manifest'}, e.g. "
                '[[variants]] name = "int8" strategy = "int8-static" '
                "(strategies: "
                + ", ".join(TFLITE_STRATEGIES if manifest.format == "tflite" else strategies())
                + ")"
            )
    files = {}
    log_lines = _line_count(library_log(cache_dir))
    unusable = {m.name: base_problem(m) for m in manifests}
    for name, problem in unusable.items():
        if problem:
            log(f"cannot build the variants of {name}: {problem}")
    for manifest, variant in chosen:
        problem = unusable.get(manifest.name)
        if problem and variant.strategy not in ("fp32", "external"):
            files[(manifest.name, variant.name)] = VariantFile(
                None, error=f"{manifest.name}/{variant.name}: not built: {problem}"
            )
            continue
        try:
            built = build_isolated(
                build_variant, manifest, variant, cache_dir, context_for(manifest)
            )
        except NoEffect as exc:
            log(f"not measured: {exc}")
            files[(manifest.name, variant.name)] = VariantFile(
                None, error=str(exc), status="no-effect"
            )
            continue
        except CompressionFailed as exc:
            log(f"cannot build: {exc}")
            files[(manifest.name, variant.name)] = VariantFile(None, error=str(exc))
            continue
        if not built.cached:
            log(f"built {manifest.name}/{variant.name} ({variant.strategy}) -> {built.path.name}")
        calibration = str(built.report.get("calibration") or "")
        if calibration.startswith(RANDOM_CALIBRATION):
            log(
                f"warning: {manifest.name}/{variant.name} ({variant.strategy}) is calibrated on "
                "seeded random inputs: its int8 ranges may not cover real data, and its "
                "quality stays unverified; give representative inputs ([data] in "
                f"{manifest.manifest_path or 'the manifest'}, or eval.calibration_file)"
            )
        files[(manifest.name, variant.name)] = VariantFile(
            built.path,
            built.report,
            cached=None if variant.strategy in ("fp32", "external") else built.cached,
        )
    said = _line_count(library_log(cache_dir)) - log_lines
    if said:
        log(f"the compression libraries' own output ({said} lines) is in {library_log(cache_dir)}")
    return files


def library_log(cache_dir: Path) -> Path:
    """Where the compression libraries' own output goes (harness/compress/base.py)."""
    return cache_dir / "build.log"


def _line_count(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, "rb") as log:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: log.read(1 << 20), b""))
