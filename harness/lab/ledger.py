"""The queue's own rows in the run index (PostgreSQL), beside the job queue library's:

- `harness_jobs`: each submitted job's spec, which attempt at it is current (and by which
  worker), and its one record. A record is accepted only from the current attempt, so a
  worker that was given up for dead and comes back cannot write a second one.
- `harness_device_leases`: a device taken by a worker until `expires_at`, refreshed by the
  worker's heartbeat; another worker waits for it to expire. The lease in the device's
  own work directory (harness/lease.py) stays as the second line of defence.

Every write is one transaction (`RunIndex.transact`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.shared.index import RunIndex
from harness.stored_run import RunMeta

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Claimed:
    """A job this worker now runs: its attempt (1 the first time), its spec, and the run's
    run.json as submitted."""

    run_id: str
    job_id: str
    attempt: int
    spec: dict[str, Any]
    run_meta: RunMeta


@dataclass(frozen=True)
class RunProgress:
    run_id: str
    status: str  # the run's: queued, running, assembling, spooled, finished
    jobs: int
    recorded: int
    statuses: dict[str, int]  # the recorded jobs' statuses, counted
    location: str | None


class Ledger:
    def __init__(self, index: RunIndex) -> None:
        self.index = index

    # -- submitting ----------------------------------------------------------------------

    def add_run(
        self,
        run_id: str,
        site: str,
        plan: str,
        priority: str,
        run_meta: RunMeta,
        jobs: list[tuple[str, str, dict[str, Any]]],
    ) -> None:
        """A submitted run (queued) and its jobs (job id, device, spec), in one transaction."""

        def work(db: psycopg.Connection[Any]) -> None:
            db.execute(
                "INSERT INTO harness_runs (run_id, site, plan, status, started_at, devices,"
                " meta, priority, run_meta) VALUES (%s, %s, %s, 'queued', %s, %s, %s, %s, %s)",
                (
                    run_id, site, plan, run_meta["started_at"], sorted(run_meta["devices"]),
                    json.dumps({"jobs": len(jobs)}), priority, json.dumps(run_meta),
                ),
            )  # fmt: skip
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO harness_jobs (run_id, job_id, device, spec)"
                    " VALUES (%s, %s, %s, %s)",
                    [(run_id, job_id, device, json.dumps(spec)) for job_id, device, spec in jobs],
                )

        self.index.transact(work)

    def drop_run(self, run_id: str) -> None:
        """A submission that could not be queued whole, taken back."""
        self.index.transact(
            lambda db: db.execute("DELETE FROM harness_runs WHERE run_id = %s", (run_id,))
        )

    # -- running -------------------------------------------------------------------------

    def claim(self, run_id: str, job_id: str, worker: str) -> Claimed | None:
        """The next attempt at a job, or None when it has its record already (a worker
        that died after recording it, before the queue heard)."""

        def work(db: psycopg.Connection[Any]) -> Claimed | None:
            row = db.execute(
                "UPDATE harness_jobs j SET attempt = attempt + 1, worker = %s"
                " FROM harness_runs r WHERE j.run_id = %s AND j.job_id = %s"
                " AND j.record IS NULL AND r.run_id = j.run_id"
                " RETURNING j.attempt, j.spec, r.run_meta",
                (worker, run_id, job_id),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE harness_runs SET status = 'running' WHERE run_id = %s"
                " AND status = 'queued'",
                (run_id,),
            )
            return Claimed(run_id, job_id, int(row[0]), row[1], row[2])

        return self.index.transact(work)

    def record(
        self, run_id: str, job_id: str, attempt: int, status: str, record: dict[str, Any]
    ) -> bool:
        """The job's one record, from its current attempt only; False when a later attempt
        owns the job (this one was given up for dead) or it has its record."""

        def work(db: psycopg.Connection[Any]) -> bool:
            done = db.execute(
                "UPDATE harness_jobs SET record = %s, status = %s, recorded_at = now()"
                " WHERE run_id = %s AND job_id = %s AND attempt = %s AND record IS NULL",
                (json.dumps(record), status, run_id, job_id, attempt),
            )
            return done.rowcount == 1

        return self.index.transact(work)

    def records(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.index.transact(
            lambda db: db.execute(
                "SELECT record FROM harness_jobs WHERE run_id = %s AND record IS NOT NULL"
                " ORDER BY job_id",
                (run_id,),
            ).fetchall()
        )
        return [row[0] for row in rows]

    def spec(self, run_id: str, job_id: str) -> tuple[dict[str, Any], str | None] | None:
        """A job's spec and the worker of its latest attempt."""
        row = self.index.transact(
            lambda db: db.execute(
                "SELECT spec, worker FROM harness_jobs WHERE run_id = %s AND job_id = %s",
                (run_id, job_id),
            ).fetchone()
        )
        return None if row is None else (row[0], row[1])

    # -- a device's lease ----------------------------------------------------------------

    def take_device(self, device: str, worker: str, purpose: str, ttl_s: float) -> str | None:
        """The device for `worker` until `ttl_s` from now; None if taken, else who holds it
        (a lease that has expired is taken over)."""

        def work(db: psycopg.Connection[Any]) -> str | None:
            row = db.execute(
                "INSERT INTO harness_device_leases VALUES (%(device)s, %(worker)s, %(purpose)s,"
                " now() + make_interval(secs => %(ttl)s)) ON CONFLICT (device) DO UPDATE"
                " SET worker = EXCLUDED.worker, purpose = EXCLUDED.purpose,"
                " expires_at = EXCLUDED.expires_at"
                " WHERE harness_device_leases.expires_at < now()"
                " OR harness_device_leases.worker = EXCLUDED.worker RETURNING worker",
                {"device": device, "worker": worker, "purpose": purpose, "ttl": ttl_s},
            ).fetchone()
            if row is not None:
                return None
            holder = db.execute(
                "SELECT worker || ' (' || purpose || ') until ' || expires_at::text"
                " FROM harness_device_leases WHERE device = %s",
                (device,),
            ).fetchone()
            return str(holder[0]) if holder else "another worker"

        return self.index.transact(work)

    def refresh_devices(self, devices: list[str], worker: str, ttl_s: float) -> None:
        self.index.transact(
            lambda db: db.execute(
                "UPDATE harness_device_leases SET expires_at = now() + make_interval(secs => %s)"
                " WHERE device = ANY(%s) AND worker = %s",
                (ttl_s, devices, worker),
            )
        )

    def release_device(self, device: str, worker: str) -> None:
        self.index.transact(
            lambda db: db.execute(
                "DELETE FROM harness_device_leases WHERE device = %s AND worker = %s",
                (device, worker),
            )
        )

    # -- the run as a whole --------------------------------------------------------------

    def progress(self, run_id: str) -> RunProgress | None:
        def work(db: psycopg.Connection[Any]) -> RunProgress | None:
            run = db.execute(
                "SELECT status, location FROM harness_runs WHERE run_id = %s", (run_id,)
            ).fetchone()
            if run is None:
                return None
            counts = db.execute(
                "SELECT status, count(*) FROM harness_jobs WHERE run_id = %s GROUP BY status",
                (run_id,),
            ).fetchall()
            statuses = {str(s): int(n) for s, n in counts if s is not None}
            total = sum(int(n) for _, n in counts)
            return RunProgress(run_id, str(run[0]), total, sum(statuses.values()), statuses, run[1])

        return self.index.transact(work)

    def claim_assembly(self, run_id: str, stale_s: float) -> RunMeta | None:
        """The run's run.json as submitted, for the one controller that assembles it now:
        every job recorded, nobody assembling it (or the one who was, silent for `stale_s`)."""

        def work(db: psycopg.Connection[Any]) -> RunMeta | None:
            row = db.execute(
                "UPDATE harness_runs SET status = 'assembling', assembly_at = now()"
                " WHERE run_id = %(run)s AND run_meta IS NOT NULL AND (status IN"
                " ('queued', 'running') OR (status = 'assembling' AND assembly_at <"
                " now() - make_interval(secs => %(stale)s))) AND NOT EXISTS (SELECT 1 FROM"
                " harness_jobs WHERE run_id = %(run)s AND record IS NULL) RETURNING run_meta",
                {"run": run_id, "stale": stale_s},
            ).fetchone()
            return None if row is None else RunMeta(**row[0])

        return self.index.transact(work)
