"""What every command shares: the command groups, common options, the console, and
the one rule for errors: a `HarnessError` becomes a message and an exit code (2: bad
input to fix; 1: a device or a job that failed)."""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console


app = typer.Typer(
    help="Benchmark compressed neural networks on your own edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


devices_app = typer.Typer(help="The device inventory (devices/*.toml).", no_args_is_help=True)


models_app = typer.Typer(help="Model manifests and bundled models.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
app.add_typer(models_app, name="models")


DevicesDir = Annotated[
    Path, typer.Option(envvar="HARNESS_DEVICES_DIR", help="Folder of device TOML files.")
]


RunsDir = Annotated[
    Path, typer.Option(envvar="HARNESS_RUNS_DIR", help="Folder holding run directories.")
]


RunRef = Annotated[str, typer.Argument(metavar="RUN", help="A run id, a path, or 'latest'.")]


Baseline = Annotated[str | None, typer.Option(help="Baseline run for max_regression_pct.")]


def _console() -> Console:
    from rich.console import Console

    from harness.cli.fit import PIPED_WIDTH

    # Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else PIPED_WIDTH)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, `kill`): stopped like Ctrl-C, exit status 143."""


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    def raise_terminated(signum: int, frame: object) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _plain(console: Console) -> Any:
    """A log function for library messages: they hold paths, device output and TOML keys
    in brackets, never rich markup."""
    return lambda text: console.print(text, markup=False, soft_wrap=True)


F = TypeVar("F", bound=Callable[..., Any])


def command(group: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register a function as a command of `group` behind the one error boundary: a
    `HarnessError` that reaches it becomes its message and exit code (`_exit_code`), never
    a traceback; commands raise, they do not catch."""

    def register(function: F) -> F:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            from harness.errors import HarnessError

            try:
                return function(*args, **kwargs)
            except HarnessError as exc:
                raise _fail(str(exc), _exit_code(exc)) from None

        group.command(name)(guarded)
        return function

    return register


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    _console().print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _shown(path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def _exit_code(exc: Exception) -> int:
    """2 for bad input (a configuration or run directory to fix), 1 for a device or job
    that failed: the same in every command."""
    from harness.errors import ConfigError, StoreError

    return 2 if isinstance(exc, ConfigError | StoreError) else 1


def _inventory(devices_dir: Path, needed: list[str]) -> dict[str, Any]:
    """The inventory; a device file that does not load stops the command only when the
    command needs that device, and is a warning otherwise."""
    from harness.config import load_inventory, needed_devices
    from harness.errors import ConfigError

    problems: dict[str, ConfigError] = {}
    inventory = load_inventory(devices_dir, problems)
    console = _console()
    needed_devices(needed, problems, lambda text: console.print(text, markup=False))
    return inventory


@contextlib.contextmanager
def _device_transport(name: str, devices_dir: Path) -> Iterator[Any]:
    """An open transport to a device of the inventory; errors become exit codes."""
    from harness.transport import open_transport

    inventory = _inventory(devices_dir, [name])
    if name not in inventory:
        raise _fail(f"no device '{name}'; known: {', '.join(sorted(inventory))}")
    with open_transport(inventory[name], inventory) as transport:
        yield transport
