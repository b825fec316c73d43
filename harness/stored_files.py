"""How the store's files are written and read: atomically (a file holds all of what was
written or is as it was), with the mode every other file the user makes gets, a full disk
told apart from other failures, and a file written by a newer harness refused, never
guessed at."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError, StoreError, StoreFull

if TYPE_CHECKING:
    import pandas as pd


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# the mode of a new file under the user's umask (read once, at import): job records and
# run.json as the parquet views that pyarrow writes
FILE_MODE = 0o666 & ~_umask()


def write_json_atomic(path: Path, data: Any) -> None:
    """`path` holds all of `data` or is as it was: a `StoreFull` on a full disk, a
    `StoreError` for any other reason it cannot be written."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.fchmod(fd, FILE_MODE)  # as the parquet views beside it, not mkstemp's 0600
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def write_error(path: Path, exc: OSError) -> HarnessError:
    path = Path(os.path.normpath(path))  # plans/../reports: said as the folder it is
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(
            f"cannot write {path}: the disk of the reports folder {path.parent} is full "
            f"({exc.strerror})"
        )
    return StoreError(f"cannot write {path}: {exc.strerror or exc}")


def refuse_newer(path: Path, schema: Any, known: str) -> None:
    """A file written by a newer harness is not guessed at: the user is told to upgrade."""
    name, _, version = str(schema).rpartition("/")
    known_name, _, known_version = known.rpartition("/")
    if name == known_name and version.isdigit() and int(version) > int(known_version):
        raise StoreError(f"{path}: written by a newer harness ({schema}); upgrade to read it")


def read_view(path: Path, newest_version: int | None = None) -> pd.DataFrame:
    """A parquet view; one whose rows carry a `schema_version` newer than the code is
    refused (an older harness reading a newer run)."""
    import pandas as pd

    frame = pd.read_parquet(path)
    if newest_version is not None and "schema_version" in frame and len(frame):
        newest = int(frame["schema_version"].max())
        if newest > newest_version:
            raise StoreError(
                f"{path}: written by a newer harness (table version {newest}, this one "
                f"reads up to {newest_version}); upgrade to read it"
            )
    return frame
