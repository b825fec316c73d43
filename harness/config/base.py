"""What every configuration file shares: strict models, reading TOML, and errors that name
the file, the key and the fix."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
)

from harness.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# the longest duration any key may give: a timer or a wait beyond it is a typo, and `inf`
# would overflow a timer (no watchdog) or hang a wait forever
MAX_DURATION_S = 7 * 86_400


class _Strict(BaseModel):
    # strict: `retries = "2"` or `use_agent = 1` is a mistake to name, never coerced;
    # `inf` and `nan` (valid TOML floats) are never a setting, budget or range
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def duration_s(zero_allowed: bool = False) -> Any:
    """A duration key in seconds: finite, above 0 (or 0 when `zero_allowed`), at most
    MAX_DURATION_S."""
    if zero_allowed:
        return Field(ge=0, le=MAX_DURATION_S)
    return Field(gt=0, le=MAX_DURATION_S)


M = TypeVar("M", bound=_Strict)


# paths are written as strings in TOML: the one conversion strict mode keeps
LaxPath = Annotated[Path, Strict(False)]


# keys people write from habit (ssh_config, Fabric, Ansible) -> ours
KEY_SYNONYMS = {
    "hostname": "host", "address": "host", "ip": "host", "username": "user",
    "identityfile": "identity_file", "key_file": "identity_file", "key": "identity_file",
    "proxyjump": "proxy_jump", "jump_host": "proxy_jump", "password": "password_env",
}  # fmt: skip


def _read_toml(path: Path) -> dict[str, Any]:
    if path.exists() and not path.is_file():
        raise ConfigError(
            path, "not a file (a folder named like a TOML file?): rename or remove it"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(path, "file not found") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot be read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path,
            f"not UTF-8 text (byte {data[exc.start : exc.start + 1]!r} at line {line}): "
            "save it as UTF-8",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        last_line = f"(at the end of the file, line {text.count(chr(10)) + 1})"
        detail = str(exc).replace("(at end of document)", last_line)
        raise ConfigError(path, f"not valid TOML ({detail}); fix the syntax at that line") from None


def _validate(model: type[M], data: dict[str, Any], path: Path) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or None
        raise ConfigError(path, _explain(model, first), key) from None


def _explain(model: type[BaseModel], error: Any) -> str:
    loc = error["loc"]
    if error["type"] == "extra_forbidden":
        owner = _owner_model(model, loc[:-1])
        allowed = sorted(owner.model_fields) if owner else []
        allowed = [a for a in allowed if a not in ("source", "manifest_path", "plan_path")]
        synonym = KEY_SYNONYMS.get(str(loc[-1]).lower())
        guess = [synonym] if synonym in allowed else []
        guess = guess or difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" Did you mean '{guess[0]}'?" if guess else ""
        return f"unknown key.{hint} Allowed keys: {', '.join(allowed)}"
    if error["type"] == "missing":
        return "required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if error["type"] in ("int_type", "float_type", "bool_type") and isinstance(value, str):
        return f"{message}: write it without quotes (got the string {value!r})"
    return f"{message} (got {value!r})"


def _owner_model(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None:
            return None
        annotation = field.annotation
        current = _first_model(annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None
