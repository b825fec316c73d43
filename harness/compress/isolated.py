"""Builds that cannot take the command down: each variant is built in a child process, and
a base that cannot be built from is named once, before any variant tries.

The compression libraries run native code (onnxruntime's quantizer, ai-edge-quantizer's
calibration, protobuf): a segfault, an abort or the kernel's OOM killer there used to end
`harness run` with no table. In a child, it ends that variant with the signal and the
library that died; the other variants, and the run, go on.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import signal
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.compress.base import BuildContext, CompressionFailed
from harness.compress.verify import NoEffect
from harness.config import ModelManifest, Variant

Built = TypeVar("Built")
Build = Callable[[ModelManifest, Variant, Path, BuildContext], Built]

# the library each strategy's native code comes from, for the message when it dies
LIBRARIES = {
    "fp16": "onnxconverter-common / onnxruntime",
    "int8-dynamic": "onnxruntime.quantization",
    "int8-static": "onnxruntime.quantization",
    "prune-unstructured": "onnx",
    "prune-structured": "onnx",
    "low-rank": "onnx",
}
KNOWN_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def build_isolated(
    build: Build[Built],
    manifest: ModelManifest,
    variant: Variant,
    cache_dir: Path,
    context: BuildContext,
) -> Built:
    """`build` (compress.build_variant) in a forked child: its result, its NoEffect or
    CompressionFailed, or a CompressionFailed naming the signal (or exit status) the
    child died of."""
    if variant.strategy in ("fp32", "external"):
        return build(manifest, variant, cache_dir, context)
    forking = multiprocessing.get_context("fork")
    receive, send = forking.Pipe(duplex=False)
    arguments = (send, build, manifest, variant, cache_dir, context)
    with warnings.catch_warnings():  # Python 3.12+ warns of fork beside threads; the
        warnings.simplefilter("ignore", DeprecationWarning)  # child starts none of ours
        child = forking.Process(target=_build_child, args=arguments, daemon=True)
        child.start()
    send.close()
    try:
        outcome, value = receive.recv()
    except EOFError:  # the child died before it could answer
        outcome, value = "died", None
    finally:
        receive.close()
        child.join()
    if outcome == "built":
        built: Built = value
        return built
    if outcome == "no-effect":
        raise NoEffect(value)
    if outcome == "failed":
        raise CompressionFailed(value)
    library = (
        "ai-edge-quantizer / LiteRT"
        if manifest.format == "tflite"
        else LIBRARIES.get(variant.strategy, "the compression library")
    )
    raise CompressionFailed(
        f"{manifest.name}/{variant.name}: the build process died ({_death(child.exitcode)}) "
        f"inside {library}; the other variants go on (its own output is in the build log)"
    )


def _build_child(
    send: Any,
    build: Build[Any],
    manifest: ModelManifest,
    variant: Variant,
    cache_dir: Path,
    context: BuildContext,
) -> None:
    faulthandler.disable()  # a crash is told by the parent, in one line, not a dump here
    try:
        send.send(("built", build(manifest, variant, cache_dir, context)))
    except NoEffect as exc:
        send.send(("no-effect", str(exc)))
    except CompressionFailed as exc:
        send.send(("failed", str(exc)))
    except Exception as exc:  # anything else a library raises: that variant's failure
        send.send(
            ("failed", f"{manifest.name}/{variant.name}: {type(exc).__name__}: {str(exc)[:400]}")
        )
    finally:
        send.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


def base_problem(manifest: ModelManifest) -> str | None:
    """Why no variant can be built from this manifest's base (a file that does not parse,
    custom operators the runtime cannot run), said once for the base; None when it loads."""
    path = manifest.file
    if not path.is_file():
        return None  # said by the manifest's loader and by the fp32 job
    if manifest.format == "tflite":
        return _runtime_refuses(manifest)
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        return (
            f"the base model {path} is not a readable ONNX file "
            f"({type(exc).__name__}: {str(exc)[:200]}): truncated or corrupt? fetch it again"
        )
    custom = sorted(
        {f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in KNOWN_DOMAINS}
    )
    refused = _runtime_refuses(manifest)
    if refused and custom:
        return (
            f"the base model's custom operator(s) {', '.join(custom)} are not in onnxruntime: "
            "register their library, or measure a build that does not need them"
        )
    return refused


def _runtime_refuses(manifest: ModelManifest) -> str | None:
    from harness.data_files import model_inputs, runtime_refusal

    try:
        model_inputs(manifest.file)
    except Exception as exc:  # the runtime's own refusal is the reason
        return runtime_refusal(manifest.file, exc)
    return None
