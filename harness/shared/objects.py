"""A shared store's object store: each finished run's files, immutable, under
`site=…/plan=…/run=…/`, through pyarrow's S3 filesystem (any S3-compatible server). The
credentials are the S3 client's own (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the
AWS credentials file): the harness never reads, stores or prints them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import SharedStoreError
from harness.shared.location import ObjectsLocation

if TYPE_CHECKING:
    import pyarrow.fs as pafs

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0


class ObjectsUnreachable(SharedStoreError):
    """The object store did not answer (down, a network fault): a run stays spooled on
    the controller, to be uploaded by `harness store sync`."""

    exit_status = 1


class ObjectStore:
    def __init__(self, location: ObjectsLocation) -> None:
        self.location = location
        self._fs: pafs.S3FileSystem | None = None

    @property
    def fs(self) -> pafs.S3FileSystem:
        import pyarrow.fs as pafs

        if self._fs is None:
            endpoint = self.location.endpoint
            scheme, _, host = endpoint.partition("://") if endpoint else ("https", "", None)
            self._fs = pafs.S3FileSystem(
                endpoint_override=host, scheme=scheme, region=self.location.region,
                connect_timeout=CONNECT_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S,
                retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2),
            )  # fmt: skip
        return self._fs

    def _fail(self, exc: OSError, doing: str) -> SharedStoreError:
        text = str(exc)
        where = self.location.url()
        if any(w in text for w in ("AccessDenied", "ACCESS_DENIED", "InvalidAccessKeyId",
                                   "SignatureDoesNotMatch",
                                   "403")):  # fmt: skip
            return SharedStoreError(
                f"the object store at {where} refused the credentials while {doing}: set "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials) to a key "
                "that may read and write the bucket"
            )
        if "NoSuchBucket" in text or "does not exist" in text:
            return SharedStoreError(
                f"the object store at {where} has no bucket '{self.location.bucket}': "
                "create it, or give another with `harness store init --objects s3://...`"
            )
        return ObjectsUnreachable(
            f"the object store at {where} did not answer while {doing}: "
            f"{text.strip().splitlines()[0] if text.strip() else type(exc).__name__}"
        )

    def check(self) -> None:
        """The bucket is there and the credentials may list it."""
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(self.location.bucket)
        except OSError as exc:
            raise self._fail(exc, "looking for the bucket") from None
        if info.type != pafs.FileType.Directory:
            raise SharedStoreError(
                f"the object store at {self.location.url()} has no bucket "
                f"'{self.location.bucket}': create it, or give another with "
                "`harness store init --objects s3://...`"
            )

    def upload_run(self, run_dir: Path, key: str) -> int:
        """Every file of the run under `key`; the number of files. Objects are written
        whole (an S3 PUT is atomic); the index row, committed after, is what publishes."""
        files = sorted(p for p in run_dir.rglob("*") if p.is_file())
        try:
            for path in files:
                target = f"{key}/{path.relative_to(run_dir).as_posix()}"
                with path.open("rb") as source, self.fs.open_output_stream(target) as out:
                    shutil.copyfileobj(source, out, 1 << 20)
        except OSError as exc:
            raise self._fail(exc, f"uploading {run_dir.name}") from None
        return len(files)

    def blob_key(self, sha256: str) -> str:
        return f"{self.location.root()}/blobs/sha256/{sha256}"

    def put_blob(self, path: Path, sha256: str) -> bool:
        """A file a queued job needs (a variant, a data set), stored once by its content;
        False when the store has it already."""
        import pyarrow.fs as pafs

        key = self.blob_key(sha256)
        try:
            if self.fs.get_file_info(key).type == pafs.FileType.File:
                return False
            with path.open("rb") as source, self.fs.open_output_stream(key) as out:
                shutil.copyfileobj(source, out, 1 << 20)
        except OSError as exc:
            raise self._fail(exc, f"uploading {path.name}") from None
        return True

    def get_blob(self, sha256: str, target: Path) -> Path:
        """A stored file into `target` (whole, then moved in place), its content checked."""
        import hashlib

        if target.is_file():
            return target  # named by its content: a copy once fetched stays right
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        scratch = Path(name)
        digest = hashlib.sha256()
        try:
            with (
                self.fs.open_input_stream(self.blob_key(sha256)) as source,
                os.fdopen(handle, "wb") as out,
            ):
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise SharedStoreError(
                    f"the object store's copy of {target.name} ({self.blob_key(sha256)}) is "
                    f"corrupt: its sha256 is {digest.hexdigest()}; submit the run again"
                )
            os.replace(scratch, target)
        except OSError as exc:
            raise self._fail(exc, f"fetching {target.name}") from None
        finally:
            scratch.unlink(missing_ok=True)
        return target

    def download_run(self, key: str, target: Path) -> Path:
        """The run's files into `target` (made whole in a temporary folder beside it, then
        moved in place: a reader never sees half a run)."""
        import pyarrow.fs as pafs

        if (target / "run.json").is_file():
            return target  # runs are immutable: a copy once fetched stays right
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".fetching-"))
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(key, recursive=True))
            for info in infos:
                if info.type != pafs.FileType.File:
                    continue
                local = scratch / info.path[len(key) :].lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                with self.fs.open_input_stream(info.path) as source, local.open("wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            if not (scratch / "run.json").is_file():
                raise SharedStoreError(
                    f"the object store holds no run at {key} (no run.json): the index points "
                    "to files that are gone; `harness store status` lists the runs"
                )
            os.replace(scratch, target)
        except OSError as exc:
            raise self._fail(exc, f"fetching {key}") from None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target
