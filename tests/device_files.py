"""Device files for the tests, written as a user writes them: the top-level keys first,
then a table per section ([connection], [placement], [power], [thermal], [retry]).

The helpers take the flat shorthand `host=..., power="rapl", power_idle_s=0.5,
retries=1`: each key goes to the section the configuration says it belongs to
(harness.config.MOVED_KEYS), so a test names what it sets, not where it lives.
"""

from __future__ import annotations

from collections.abc import Mapping

from harness.config import MOVED_KEYS

TOP_LEVEL = ("name", "transport", "role", "description")


def device_file(fields: Mapping[str, object], labels: Mapping[str, str] | None = None) -> str:
    top: list[str] = []
    sections: dict[str, dict[str, object]] = {}
    for key, value in fields.items():
        if value is None:
            continue
        if key in TOP_LEVEL:
            top.append(f"{key} = {toml_value(value)}")
        elif key == "power":
            sections.setdefault("power", {})["source"] = value
        else:
            section, name = MOVED_KEYS[key].split(".")
            sections.setdefault(section, {})[name] = value
    lines = top
    for section, values in sections.items():
        lines += ["", f"[{section}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    if labels:
        lines += ["", "[labels]"] + [f"{k} = {toml_value(v)}" for k, v in labels.items()]
    return "\n".join(lines) + "\n"


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def local_device_file(workdir: object, python: object = None, **extra: object) -> str:
    """A `local` device (this machine) with its own workdir; its Python is this one."""
    import sys

    fields = {"transport": "local", "python": python or sys.executable, "workdir": str(workdir)}
    return device_file({**fields, **extra})
