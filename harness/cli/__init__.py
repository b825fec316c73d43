"""The `harness` command line: parse, call the library, print. No logic lives here.

Heavy modules (pandas, paramiko, onnx, pydantic) are imported inside the commands so that
`harness --help` stays fast.

Exit codes: 0 all jobs ok; 1 some jobs failed, timed out or were skipped (their results
are on disk); 2 bad input (configuration, unknown run); 130 interrupted (Ctrl-C), 143
terminated (SIGTERM).
"""

from __future__ import annotations  # noqa: I001 -- the command modules in workflow order

import sys

from harness.cli.common import app, command_line

# each module registers its commands; help lists them in this order
from harness.cli import runs  # noqa: F401, E402
from harness.cli import lab  # noqa: F401, E402
from harness.cli import results  # noqa: F401, E402
from harness.cli import devices  # noqa: F401, E402
from harness.cli import project  # noqa: F401, E402
from harness.cli import tune  # noqa: F401, E402
from harness.cli import store  # noqa: F401, E402

__all__ = ["app", "main"]


def main() -> None:
    try:
        command_line()()
    except BrokenPipeError:  # e.g. `harness show | head`
        sys.stderr.close()
