"""What a project holds: `models list`, `plans list`, `runs list`, and `init` to start one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.common import (
    RunsDir,
    app,
    command,
    make_console,
    models_app,
    plans_app,
    runs_app,
    shown,
)
from harness.cli.output import Format, FormatOption, print_records
from harness.errors import UsageError

ModelsDir = Annotated[Path, typer.Option(help="Folder of model manifests.")]


@command(models_app, "list")
def models_list(
    models_dir: ModelsDir = Path("models"), output: FormatOption = Format.table
) -> None:
    """The model manifests: format, task, what quality is measured on, the variants."""
    from harness.config import load_manifest
    from harness.errors import ConfigError

    records: list[dict[str, Any]] = []
    for path in sorted(models_dir.glob("*.toml")):
        try:
            manifest = load_manifest(path, require_files=False)
        except ConfigError as exc:
            records.append({"name": path.stem, "problem": str(exc).splitlines()[0]})
            continue
        records.append(
            {
                "name": manifest.name,
                "format": manifest.format,
                "task": manifest.task,
                "quality_inputs": _quality_inputs(manifest),
                "variants": [v.name for v in manifest.all_variants()],
                "file": str(manifest.file),
                "file_present": Path(manifest.file).is_file(),
                "problem": None,
            }
        )
    fields = ("name", "format", "task", "quality_inputs", "variants", "file", "file_present",
              "problem")  # fmt: skip
    _print(records, fields, output, f"no model manifests in {models_dir}", prose=("variants",))


def _quality_inputs(manifest: Any) -> str:
    """What a variant's quality is measured on: labelled data, representative data, or
    nothing but seeded random inputs (unverified)."""
    if manifest.eval is not None:
        return "labelled eval set"
    if manifest.data is not None:
        kind = next(k for k in ("file", "images", "audio", "binary") if getattr(manifest.data, k))
        return f"representative [data] ({kind})"
    return "random only (unverified)"


@command(plans_app, "list")
def plans_list(
    plans_dir: Annotated[Path, typer.Option(help="Folder of plan TOML files.")] = Path("plans"),
    output: FormatOption = Format.table,
) -> None:
    """The plans: their devices, models and variants."""
    from harness.config import load_plan
    from harness.errors import ConfigError

    records: list[dict[str, Any]] = []
    for path in sorted(plans_dir.glob("*.toml")):
        try:
            plan = load_plan(path)
        except ConfigError as exc:
            records.append(
                {"name": path.stem, "path": str(path), "problem": str(exc).splitlines()[0]}
            )
            continue
        records.append(
            {
                "name": plan.name,
                "path": str(path),
                "devices": plan.devices,
                "models": plan.models,
                "variants": plan.variants or ["all"],
                "problem": None,
            }
        )
    fields = ("name", "path", "devices", "models", "variants", "problem")
    _print(records, fields, output, f"no plans in {plans_dir}", prose=("models", "devices"))


@command(runs_app, "list")
def runs_list(
    runs_dir: RunsDir = Path("reports/runs"), output: FormatOption = Format.table
) -> None:
    """The stored runs, oldest first: plan, start, whether finished, jobs by status."""
    from harness.store import RunStore

    records: list[dict[str, Any]] = []
    for run_dir in sorted(p for p in runs_dir.glob("*") if (p / "jobs").is_dir()):
        meta = RunStore(run_dir).read_run_meta()
        plan = meta.get("plan") or {}
        counts = meta.get("status_counts") or {}
        records.append(
            {
                "run_id": run_dir.name,
                "plan": plan.get("name") if isinstance(plan, dict) else None,
                "started_at": meta.get("started_at"),
                "finished": bool(meta.get("finished_at")),
                "jobs": counts,
                "path": str(run_dir),
            }
        )
    fields = ("run_id", "plan", "started_at", "finished", "jobs", "path")
    _print(records, fields, output, f"no runs in {runs_dir}", prose=("jobs",))


def _print(
    records: list[dict[str, Any]],
    fields: tuple[str, ...],
    output: Format,
    empty: str,
    prose: tuple[str, ...] = (),
) -> None:
    """Records as a table (lists and dicts written out), or for scripts as they are."""
    if output != Format.table:
        print_records(records, fields, output)
        return
    from harness.cli.fit import Column, print_fitted

    console = make_console()
    if not records:
        console.print(empty)
        return

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, list):
            return ", ".join(map(str, value))
        if isinstance(value, dict):
            return ", ".join(f"{v} {k}" for k, v in value.items())
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    shown_fields = [f for f in fields if any(r.get(f) not in (None, "") for r in records)]
    rows = [[cell(r.get(f)) for f in shown_fields] for r in records]
    columns = [Column(f, prose=f in prose or f == "problem") for f in shown_fields]
    print_fitted(console, columns, rows, drop_first=("path", "file", "started_at"))


@command(app)
def init(
    folder: Annotated[Path, typer.Argument(help="The project folder (made if missing).")] = Path(
        "."
    ),
    model: Annotated[
        Path | None, typer.Option(help="Your model file (.onnx or .tflite) to benchmark.")
    ] = None,
    ssh: Annotated[
        str | None,
        typer.Option(metavar="USER@HOST[:PORT]", help="A board reached over SSH (else `local`)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="The device's name (default: its host).")] = None,
) -> None:
    """Start a project: a model manifest, a first plan and (with --ssh) a device file, then
    the commands to run next. Never overwrites a file."""
    from harness.config import LOCAL_DEVICE_NAME
    from harness.scaffold import SshTarget, safe_name, scaffold

    console = make_console()
    if model is not None and not model.is_file():
        raise UsageError(f"--model {model}: no such file")
    if model is not None and model.suffix.lower() not in (".onnx", ".tflite"):
        raise UsageError(f"--model {model}: a model file ends in .onnx or .tflite")
    try:
        target = SshTarget.parse(ssh) if ssh else None
    except ValueError as exc:
        raise UsageError(f"--ssh: {exc}") from None
    device = safe_name(name or (target.host.split(".")[0] if target else LOCAL_DEVICE_NAME))
    models_dir = folder / "models"
    if model is not None:
        model_name = safe_name(model.stem)
        model_file = os.path.relpath(model.resolve(), models_dir.resolve())
        dims = _dynamic_dims(model)
    else:
        model_name, model_file, dims = "my_model", "my_model.onnx", {"batch": 1}
    files = scaffold(model_name, model_file, dims, device, target)
    existing = [path for path in files if (folder / path).exists()]
    if existing:
        raise UsageError(
            f"{', '.join(shown(folder / p) for p in existing)} already exist(s): nothing was "
            "written; choose another folder or move them away"
        )
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        console.print(f"wrote {shown(path)}")
    plan = shown(folder / "plans" / "first.toml")
    console.print("next:")
    if model is None:
        console.print(
            f"  put your model's path in {shown(models_dir / 'my_model.toml')} (file = ...)"
        )
    if target is not None:
        console.print(f"  harness devices check {device} --devices-dir {shown(folder / 'devices')}")
    console.print(f"  harness run {plan}")


def _dynamic_dims(model: Path) -> dict[str, int]:
    """Every dynamic axis of an ONNX model's inputs, set to 1 (batch and the like): the plan
    must fix them. A TFLite model's shapes are fixed."""
    if model.suffix.lower() != ".onnx":
        return {}
    import onnx

    dims: dict[str, int] = {}
    graph = onnx.load(str(model), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_value > 0:
                continue
            dims[dim.dim_param or f"{value.name}:{axis}"] = 1
    return dims
