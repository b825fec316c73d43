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
    from rich.text import Text


# Help is plain text (rich_markup_mode=None): it prints brackets as written ("[[budget]]
# tables", "[data]") and starts without importing rich.
app = typer.Typer(
    help="Benchmark compressed neural networks on your own edge devices.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


devices_app = _group("The device inventory (devices/*.toml).")
models_app = _group("Model manifests and bundled models.")
plans_app = _group("The plans (plans/*.toml).")
runs_app = _group("Stored runs (reports/runs/).")
store_app = _group("A lab's shared store: the run index (HARNESS_STORE) and its object store.")
app.add_typer(devices_app, name="devices")
app.add_typer(models_app, name="models")
app.add_typer(plans_app, name="plans")
app.add_typer(runs_app, name="runs")
app.add_typer(store_app, name="store")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"harness {version('edge-harness')} (Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Benchmark compressed neural networks on your own edge devices."""


def command_line() -> Callable[..., Any]:
    """The click command of `app`. Typer's own flags of the top group (--help and the
    completion flags) default to None, which typer coerces through its pydantic adapters
    on every command (pydantic imported: 60 ms, most of `harness devices --help`); as
    False, a bool that needs no coercion, they cost nothing."""
    command = typer.main.get_command(app)
    for param in command.params:
        _false_by_default(param)
    make_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:
        return _false_by_default(make_help_option(ctx))

    command.get_help_option = help_option  # type: ignore[method-assign]
    return command


def _false_by_default(param: Any) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    if (
        param is not None
        and param.default is None
        and getattr(descriptor, "annotation", None) is bool
    ):
        param.default = False
    return param


DevicesDir = Annotated[
    Path, typer.Option(envvar="HARNESS_DEVICES_DIR", help="Folder of device TOML files.")
]


RunsDir = Annotated[
    Path, typer.Option(envvar="HARNESS_RUNS_DIR", help="Folder holding run directories.")
]


RunRef = Annotated[str, typer.Argument(metavar="RUN", help="A run id, a path, or 'latest'.")]


Baseline = Annotated[str | None, typer.Option(help="Baseline run for max_regression_pct.")]


def make_console() -> Console:
    """The console every command prints through. It parses no markup: messages carry
    paths, device output and TOML table names in brackets (`[placement]`), which must print
    as they are; colour is given with `styled`. Off a terminal (CI logs, pipes) a message
    is one line, never wrapped or cut, so a log can be grepped, and tables fit `COLUMNS`
    where it is set, else PIPED_WIDTH (rich would make them 80 columns)."""
    from rich.console import Console

    from harness.cli.fit import piped_width

    terminal = sys.stdout.isatty()
    return Console(
        highlight=False,
        markup=False,
        soft_wrap=not terminal,
        width=None if terminal else piped_width(),
    )


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line with some parts in a style: `styled(("error:", "red"), " ", message)`. The
    text is taken as it is, brackets and all."""
    from rich.text import Text

    return Text.assemble(*parts)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled, `kill`): stopped like Ctrl-C, exit status 143."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_stop_once() -> Iterator[None]:
    """Ctrl-C and SIGTERM stop a run: the first raises KeyboardInterrupt (`Terminated`
    for SIGTERM) in the main thread; every later one is ignored, also after the block, so
    that stopping the devices (their jobs killed and recorded `interrupted`, their leases
    released) and saying so are never cut short by an impatient second Ctrl-C."""
    received: list[int] = []

    def stop_once(signum: int, frame: object) -> None:
        if received:
            return
        received.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {signum: signal.signal(signum, stop_once) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_IGN if received else handler)


def plain_log(console: Console) -> Any:
    """A log function for library messages: they hold paths, device output and TOML keys
    in brackets, never rich markup."""
    return lambda text: console.print(text)


F = TypeVar("F", bound=Callable[..., Any])


def command(group: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register a function as a command of `group` behind the one error boundary: a
    `HarnessError` that reaches it becomes its message and its `exit_status`, never
    a traceback; commands raise, they do not catch."""

    def register(function: F) -> F:
        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            from harness.errors import HarnessError

            try:
                return function(*args, **kwargs)
            except HarnessError as exc:
                make_console().print(styled(("error:", "red"), " ", str(exc)))
                raise typer.Exit(exc.exit_status) from None

        group.command(name)(guarded)
        return function

    return register


def shown(path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def inventory_for(devices_dir: Path, needed: list[str]) -> dict[str, Any]:
    """The inventory; a device file that does not load stops the command only when the
    command needs that device, and is a warning otherwise."""
    from harness.config import load_inventory, needed_devices
    from harness.errors import ConfigError

    problems: dict[str, ConfigError] = {}
    inventory = load_inventory(devices_dir, problems)
    console = make_console()
    needed_devices(needed, problems, console.print)
    return inventory


@contextlib.contextmanager
def device_transport(name: str, devices_dir: Path) -> Iterator[Any]:
    """An open transport to a device of the inventory."""
    from harness.transport import open_transport

    inventory = inventory_for(devices_dir, [name])
    with open_transport(known_device(inventory, name), inventory) as transport:
        yield transport


def known_device(inventory: dict[str, Any], name: str) -> Any:
    from harness.errors import UsageError

    if name not in inventory:
        raise UsageError(f"no device '{name}'; known: {', '.join(sorted(inventory))}")
    return inventory[name]
