"""A store shared by every controller of a lab: the run index in PostgreSQL
(`harness/shared/index.py`) and each finished run's files, immutable, in an S3-compatible
object store (`harness/shared/objects.py`), under `site=…/plan=…/run=…/`.

It is configured by one URL, the index's (`HARNESS_STORE=postgresql://USER@HOST/DB`); the
index keeps the object store's URL (`harness store init --objects s3://...`). Without it
the harness works on the local folder alone, as it always has.

A run is written on the controller's disk as ever (its spool); the index shows it
running from its start; once finished its files are uploaded, then the index row is
committed (so a reader never finds a run whose files are not all there). When the object
store cannot take them, the run stays spooled on the controller and the index says where;
`harness store sync` uploads it later. Nothing a run measured depends on the shared store
being up.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import SharedStoreError
from harness.shared.index import PooledRunIndex, RunIndex
from harness.shared.location import ObjectsLocation, redact
from harness.shared.objects import ObjectStore, ObjectsUnreachable
from harness.store import RunStore

if TYPE_CHECKING:
    import pandas as pd

ENV_URL = "HARNESS_STORE"
ENV_SITE = "HARNESS_SITE"  # the controller's site in the layout; its host name by default
OBJECTS_SETTING = "objects_url"
SPOOL_SCHEME = "spool://"


@dataclass(frozen=True)
class Published:
    run_id: str
    status: str  # finished | spooled
    location: str
    files: int = 0
    why: str = ""  # why a run stayed spooled


def configured_url() -> str | None:
    return os.environ.get(ENV_URL) or None


class SharedStore:
    def __init__(self, url: str, site: str | None = None, index: RunIndex | None = None) -> None:
        self.url = url
        self.site = site or os.environ.get(ENV_SITE) or socket.gethostname()
        self.index = index or RunIndex(url)
        self._objects: ObjectStore | None = None

    def for_threads(self) -> SharedStore:
        """The same store for many threads at once (a lab worker's jobs): its index on a
        small pool of connections rather than one."""
        return SharedStore(self.url, self.site, PooledRunIndex(self.url))

    @classmethod
    def from_environment(cls) -> SharedStore | None:
        url = configured_url()
        if url is None:
            return None
        if not url.startswith(("postgresql://", "postgres://")):
            raise SharedStoreError(
                f"{ENV_URL}={redact(url)!r} is not a PostgreSQL URL: write "
                "postgresql://USER@HOST:PORT/DATABASE"
            )
        store = cls(url)
        store.index.check()
        return store

    def describe(self) -> str:
        return redact(self.url)

    @property
    def objects(self) -> ObjectStore:
        if self._objects is None:
            url = self.index.setting(OBJECTS_SETTING)
            if url is None:
                raise SharedStoreError(
                    f"the run index at {self.describe()} names no object store yet: "
                    "`harness store init --objects s3://BUCKET/PREFIX?endpoint=http://HOST:PORT`"
                )
            self._objects = ObjectStore(ObjectsLocation.parse(url))
        return self._objects

    def init(self, objects_url: str) -> ObjectsLocation:
        """Name the object store (checked: the bucket is there, the credentials work)."""
        try:
            location = ObjectsLocation.parse(objects_url)
        except ValueError as exc:
            raise SharedStoreError(str(exc)) from None
        ObjectStore(location).check()
        self.index.set_setting(OBJECTS_SETTING, location.url())
        self._objects = None
        return location

    # -- writing -------------------------------------------------------------------------

    def begin(self, store: RunStore) -> None:
        """The run, visible to every controller as running."""
        meta = store.read_run_meta()
        self.index.begin_run(
            store.run_id, self.site, plan_name(meta), str(meta.get("started_at")),
            sorted(meta.get("devices") or {}), _summary(meta),
        )  # fmt: skip

    def publish(self, store: RunStore) -> Published:
        """A finished run's files to the object store, then its index row; spooled on
        this controller when the object store cannot take them."""
        meta = store.read_run_meta()
        results, _ = store.frames()
        rows = json.loads(results.to_json(orient="records", date_format="iso"))
        register = (
            self.site, plan_name(meta), str(meta.get("started_at")),
            sorted(meta.get("devices") or {}), _summary(meta),
        )  # fmt: skip
        finished_at = meta.get("finished_at")
        try:
            objects = self.objects
            key = objects.location.run_key(self.site, plan_name(meta), store.run_id)
            files = objects.upload_run(store.run_dir, key)
        except ObjectsUnreachable as exc:
            spool = f"{SPOOL_SCHEME}{self.site}{store.run_dir.resolve()}"
            self.index.finish_run(store.run_id, "spooled", spool, finished_at, rows, register)
            return Published(store.run_id, "spooled", spool, why=str(exc))
        location = f"s3://{key}"
        self.index.finish_run(store.run_id, "finished", location, finished_at, rows, register)
        return Published(store.run_id, "finished", location, files)

    def sync(self, runs_dir: Path) -> list[Published]:
        """Upload what this controller holds back: runs spooled here, and finished runs
        the index never saw (it was down when they ended)."""
        known = {r["run_id"]: r for r in self.index.runs()}
        mine = f"{SPOOL_SCHEME}{self.site}/"
        published = []
        for path in sorted(p for p in runs_dir.glob("*") if (p / "jobs").is_dir()):
            record = known.get(path.name)
            store = RunStore(path)
            if record is None and not store.read_run_meta().get("finished_at"):
                continue  # still running (or interrupted): `run --resume` finishes it
            spooled_here = record is not None and str(record["location"] or "").startswith(mine)
            if record is None or (record["status"] == "spooled" and spooled_here):
                published.append(self.publish(store))
        return published

    # -- reading -------------------------------------------------------------------------

    def fetch(self, ref: str, cache: Path, plan: str | None = None) -> RunStore:
        """A run of the index as a local run folder: `latest` (of `plan`, across every
        controller) or a run id. Finished runs are fetched once into `cache`."""
        if ref == "latest":
            finished = self.index.runs(plan=plan, status="finished")
            if not finished:
                which = f" of plan '{plan}'" if plan else ""
                raise SharedStoreError(
                    f"the shared store at {self.describe()} holds no finished run{which}"
                )
            record = finished[-1]
        else:
            found = self.index.run(ref)
            if found is None:
                raise SharedStoreError(
                    f"the shared store at {self.describe()} has no run '{ref}' "
                    "(`harness store status` lists its runs)"
                )
            record = found
        location = str(record["location"] or "")
        if record["status"] == "finished" and location.startswith("s3://"):
            key = location.removeprefix("s3://")
            return RunStore(self.objects.download_run(key, cache / record["run_id"]))
        if location.startswith(f"{SPOOL_SCHEME}{self.site}/"):
            path = Path(location.removeprefix(f"{SPOOL_SCHEME}{self.site}"))
            if (path / "jobs").is_dir():
                return RunStore(path)
        where = location or "a controller"
        raise SharedStoreError(
            f"run '{record['run_id']}' is {record['status']} ({where}): its files are not in "
            "the object store yet; `harness store sync` on that controller uploads them"
        )

    def history_frame(self, plan: str | None = None) -> pd.DataFrame:
        """Every finished run's result rows from the index: no file is downloaded."""
        import pandas as pd

        rows = self.index.result_rows(plan)
        if not rows:
            raise SharedStoreError(f"the shared store at {self.describe()} holds no results yet")
        frame = pd.DataFrame.from_records(rows)
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
        return frame


def plan_name(meta: Mapping[str, Any]) -> str:
    """The plan a run's run.json names (the layout's `plan=` and the index's `plan`)."""
    plan = meta.get("plan") or {}
    return str(plan.get("name") or "unnamed")


def _summary(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What the index keeps of run.json: enough to list runs (the rest is in the files)."""
    return {k: meta.get(k) for k in ("shard", "controller", "jobs") if meta.get(k) is not None}


# -- what the commands read: the local folder, else the shared store where one is set ------


def cache_dir(runs_dir: Path) -> Path:
    """Where runs fetched from the object store are kept (immutable: fetched once)."""
    return runs_dir / ".shared"


def resolve_run(runs_dir: Path, ref: str) -> RunStore:
    """`ref` as `show`, `compare`, `gate` and `report` take it: a run folder or id here,
    else (or, for `latest`, first of all) from the shared store when HARNESS_STORE is set
    -- `latest` is then the lab's, whichever controller ran it."""
    from harness import store as local
    from harness.errors import StoreError

    shared = SharedStore.from_environment()
    if shared is None:
        return local.resolve_run(runs_dir, ref)
    if ref != "latest":
        try:
            return local.resolve_run(runs_dir, ref)
        except StoreError:
            pass
    return shared.fetch(ref, cache_dir(runs_dir))


def load_history(
    sources: list[str] | None, runs_dir: Path, with_samples: bool, notes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """`history`'s table: the sources given, else the shared store's index (no download;
    the samples a trend plot needs are fetched run by run), else the local runs folder."""
    from harness import store as local

    shared = None if sources else SharedStore.from_environment()
    if shared is None:
        return local.load_history(sources or [runs_dir], with_samples=with_samples, notes=notes)
    if not with_samples:
        return shared.history_frame(), None
    fetched = [
        shared.fetch(r["run_id"], cache_dir(runs_dir)).run_dir
        for r in shared.index.runs(status="finished")
    ]
    return local.load_history(fetched, with_samples=True, notes=notes)


def resolve_baseline(
    runs_dir: Path, ref: str, plan: str, gated_id: str, devices: list[str] | None = None
) -> RunStore:
    """A gate's baseline. `latest` is the newest finished run of `plan` other than the
    gated run (`gated_id`) that ran on one of its `devices` (all runs of the plan when
    None), across every controller with a shared store; any other `ref` is taken as
    `resolve_run` takes it."""
    from harness.errors import StoreError

    if ref != "latest":
        return resolve_run(runs_dir, ref)
    shared = SharedStore.from_environment()
    if shared is not None:
        earlier = [
            r
            for r in shared.index.runs(plan=plan, status="finished")
            if r["run_id"] != gated_id and (devices is None or set(r["devices"]) & set(devices))
        ]
        if earlier:
            return shared.fetch(earlier[-1]["run_id"], cache_dir(runs_dir))
        where = f"the shared store at {shared.describe()}"
    else:
        for path in sorted(runs_dir.glob("*"), reverse=True):  # run ids start with the time
            if path.name == gated_id or not (path / "jobs").is_dir():
                continue
            store = RunStore(path)
            meta = store.read_run_meta()
            on_them = devices is None or set(meta.get("devices") or {}) & set(devices)
            if meta.get("finished_at") and plan_name(meta) == plan and on_them:
                return store
        where = str(runs_dir)
    raise StoreError(
        f"baseline = latest: {where} holds no other finished run of plan '{plan}' on "
        f"{', '.join(devices or []) or 'its devices'} to compare with; run the plan once "
        "more, or give --baseline RUN"
    )
