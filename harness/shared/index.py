"""The run index of a shared store, in PostgreSQL: every controller's runs (running,
finished, or spooled on a controller until the object store takes them), where each run's
files are, and its result rows, so that `history` and "latest" need no download.

The schema is versioned (`harness_schema`) and changed only by `harness store migrate`;
a database at another version is refused with what to do, never used or altered silently.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import SharedStoreError
from harness.shared.location import redact

if TYPE_CHECKING:
    import psycopg

T = TypeVar("T")
SCHEMA_VERSION = 2
# in a migration's statements: the job queue library's own schema (procrastinate's, pinned)
QUEUE_SCHEMA = "-- the job queue's schema --"
CONNECT_TIMEOUT_S = 10

# version -> the statements that bring the previous version to it
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE harness_settings (key text PRIMARY KEY, value text NOT NULL)",
        """CREATE TABLE harness_runs (
            run_id text PRIMARY KEY,
            site text NOT NULL,
            plan text NOT NULL,
            status text NOT NULL CHECK (status IN ('running', 'spooled', 'finished')),
            location text,
            started_at timestamptz NOT NULL,
            finished_at timestamptz,
            devices text[] NOT NULL DEFAULT '{}',
            meta jsonb NOT NULL DEFAULT '{}'::jsonb
        )""",
        "CREATE INDEX harness_runs_plan ON harness_runs (plan, started_at)",
        """CREATE TABLE harness_results (
            run_id text NOT NULL REFERENCES harness_runs ON DELETE CASCADE,
            job_id text NOT NULL,
            device text,
            model text,
            variant text,
            status text,
            row jsonb NOT NULL,
            PRIMARY KEY (run_id, job_id)
        )""",
        "CREATE INDEX harness_results_key ON harness_results (device, model, variant)",
    ],
    # one queue of jobs that every controller serves (harness/lab/)
    2: [
        "ALTER TABLE harness_runs DROP CONSTRAINT harness_runs_status_check",
        "ALTER TABLE harness_runs ADD CONSTRAINT harness_runs_status_check CHECK (status IN"
        " ('queued', 'running', 'assembling', 'spooled', 'finished'))",
        "ALTER TABLE harness_runs ADD COLUMN priority text",
        "ALTER TABLE harness_runs ADD COLUMN run_meta jsonb",  # run.json of a submitted run
        "ALTER TABLE harness_runs ADD COLUMN assembly_at timestamptz",
        """CREATE TABLE harness_jobs (
            run_id text NOT NULL REFERENCES harness_runs ON DELETE CASCADE,
            job_id text NOT NULL,
            device text NOT NULL,
            spec jsonb NOT NULL,
            attempt integer NOT NULL DEFAULT 0,
            worker text,
            status text,
            record jsonb,
            recorded_at timestamptz,
            PRIMARY KEY (run_id, job_id)
        )""",
        """CREATE TABLE harness_device_leases (
            device text PRIMARY KEY,
            worker text NOT NULL,
            purpose text NOT NULL,
            expires_at timestamptz NOT NULL
        )""",
        QUEUE_SCHEMA,
    ],
}


class IndexUnreachable(SharedStoreError):
    """The run index did not answer (down, restarting, a network fault): what waits on it
    can wait it out (a lab worker does). At a command's start it is a store that cannot
    be used: exit 2, as any other."""


class RunIndex:
    """One connection to the index; every write is one transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._connection is not None and not self._connection.closed:
            return self._connection
        try:
            self._connection = psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            raise IndexUnreachable(
                f"the run index at {redact(self.url)} cannot be reached: {_first_line(exc)}. "
                "Check HARNESS_STORE (postgresql://USER@HOST:PORT/DATABASE; the password from "
                "PGPASSWORD or ~/.pgpass, never in the URL you share)"
            ) from None
        return self._connection

    def transact(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`work` in one transaction. A connection the server dropped (a restart, a
        failover) is opened again and the work done once more: nothing of a transaction
        that failed was committed, so doing it again is safe."""
        import psycopg
        from psycopg_pool import PoolTimeout

        for attempt in (1, 2):
            try:
                with self._connection_for_work() as connection, connection.transaction():
                    return work(connection)
            except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
                if attempt == 2:
                    raise IndexUnreachable(
                        f"the run index at {redact(self.url)} cannot be reached or was lost "
                        f"mid-transaction (nothing of it was committed): {_first_line(exc)}"
                    ) from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def _connection_for_work(self) -> Iterator[psycopg.Connection[Any]]:
        """This index's one connection; dropped when the work on it lost the server."""
        import psycopg

        connection = self._connect()
        try:
            yield connection
        except (psycopg.OperationalError, psycopg.InterfaceError):
            self._connection = None
            connection.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- the schema ----------------------------------------------------------------------

    def version(self) -> int | None:
        def work(db: psycopg.Connection[Any]) -> int | None:
            found = db.execute("SELECT to_regclass('harness_schema') IS NOT NULL").fetchone()
            if not found or not found[0]:
                return None
            row = db.execute("SELECT version FROM harness_schema").fetchone()
            return int(row[0]) if row else None

        return self.transact(work)

    def migrate(self) -> tuple[int | None, int]:
        """The schema brought to SCHEMA_VERSION; (version before, after)."""
        before = self.version()
        if before is not None and before > SCHEMA_VERSION:
            raise self._newer(before)

        def work(db: psycopg.Connection[Any]) -> None:
            if before is None:
                db.execute("CREATE TABLE harness_schema (version integer NOT NULL)")
                db.execute("INSERT INTO harness_schema VALUES (0)")
            for version in range((before or 0) + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS.get(version, []):
                    if statement == QUEUE_SCHEMA:
                        _apply_queue_schema(db)
                    else:
                        db.execute(statement.encode())  # our own DDL, no parameters
            db.execute("UPDATE harness_schema SET version = %s", (SCHEMA_VERSION,))

        self.transact(work)
        return before, SCHEMA_VERSION

    def check(self) -> None:
        """Refuse a database this harness cannot use as it is."""
        version = self.version()
        if version is None:
            raise SharedStoreError(
                f"{redact(self.url)} holds no harness run index: create it with "
                "`harness store migrate`, then `harness store init --objects s3://...`"
            )
        if version < SCHEMA_VERSION:
            raise SharedStoreError(
                f"the run index at {redact(self.url)} is at schema {version}, this harness "
                f"needs {SCHEMA_VERSION}: run `harness store migrate` (once, from any "
                "controller), then upgrade the other controllers"
            )
        if version > SCHEMA_VERSION:
            raise self._newer(version)

    def _newer(self, version: int) -> SharedStoreError:
        return SharedStoreError(
            f"the run index at {redact(self.url)} is at schema {version}, newer than this "
            f"harness knows ({SCHEMA_VERSION}): upgrade the harness on this controller"
        )

    # -- settings ------------------------------------------------------------------------

    def setting(self, key: str) -> str | None:
        row = self.transact(
            lambda db: db.execute(
                "SELECT value FROM harness_settings WHERE key = %s", (key,)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        self.transact(
            lambda db: db.execute(
                "INSERT INTO harness_settings VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (key, value),
            )
        )

    # -- runs ----------------------------------------------------------------------------

    def begin_run(
        self,
        run_id: str,
        site: str,
        plan: str,
        started_at: str,
        devices: list[str],
        meta: dict[str, Any],
    ) -> None:
        """A run being written: visible to every controller as running."""
        self.transact(
            lambda db: db.execute(
                "INSERT INTO harness_runs (run_id, site, plan, status, started_at, devices, meta)"
                " VALUES (%s, %s, %s, 'running', %s, %s, %s) ON CONFLICT (run_id) DO UPDATE"
                " SET status = 'running', finished_at = NULL",
                (run_id, site, plan, started_at, devices, json.dumps(meta)),
            )
        )

    def finish_run(
        self,
        run_id: str,
        status: str,
        location: str,
        finished_at: str | None,
        rows: list[dict[str, Any]],
        register: tuple[str, str, str, list[str], dict[str, Any]] | None = None,
    ) -> None:
        """The run's files are where `location` says (the object store, or a controller's
        spool), and its result rows: in one transaction, committed after the files."""

        def work(db: psycopg.Connection[Any]) -> None:
            if register is not None:  # a run the index never saw begin (it was down then)
                site, plan, started_at, devices, meta = register
                db.execute(
                    "INSERT INTO harness_runs (run_id, site, plan, status, started_at, devices,"
                    " meta) VALUES (%s, %s, %s, 'running', %s, %s, %s)"
                    " ON CONFLICT (run_id) DO NOTHING",
                    (run_id, site, plan, started_at, devices, json.dumps(meta)),
                )
            db.execute(
                "UPDATE harness_runs SET status = %s, location = %s, finished_at = %s"
                " WHERE run_id = %s",
                (status, location, finished_at, run_id),
            )
            db.execute("DELETE FROM harness_results WHERE run_id = %s", (run_id,))
            with db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO harness_results (run_id, job_id, device, model, variant,"
                    " status, row) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            run_id,
                            r["job_id"],
                            r.get("device"),
                            r.get("model"),
                            r.get("variant"),
                            r.get("status"),
                            json.dumps(r, default=str),
                        )
                        for r in rows
                    ],  # fmt: skip
                )

        self.transact(work)

    def runs(
        self, plan: str | None = None, status: str | None = None, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Runs, oldest first, of a plan, a status, an id (all where None)."""
        query = (
            "SELECT run_id, site, plan, status, location, started_at, finished_at, devices"
            " FROM harness_runs WHERE (%(plan)s::text IS NULL OR plan = %(plan)s)"
            " AND (%(status)s::text IS NULL OR status = %(status)s)"
            " AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s) ORDER BY started_at, run_id"
        )

        def work(db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
            with db.cursor() as cursor:
                cursor.execute(query, {"plan": plan, "status": status, "run_id": run_id})
                names = [c.name for c in cursor.description or []]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return self.transact(work)

    def run(self, run_id: str) -> dict[str, Any] | None:
        found = self.runs(run_id=run_id)
        return found[0] if found else None

    def result_rows(self, plan: str | None = None) -> list[dict[str, Any]]:
        """Every finished run's result rows (of a plan): history with no download."""
        query = (
            "SELECT r.row FROM harness_results r JOIN harness_runs u USING (run_id)"
            " WHERE u.status = 'finished' AND (%(plan)s::text IS NULL OR u.plan = %(plan)s)"
            " ORDER BY u.started_at, r.job_id"
        )
        rows = self.transact(lambda db: db.execute(query, {"plan": plan}).fetchall())
        return [row[0] for row in rows]


class PooledRunIndex(RunIndex):
    """The index for many threads (a lab worker's jobs): each transaction on a
    connection of a small pool, checked before use, so a worker holds a few connections
    however many devices it serves."""

    def __init__(self, url: str, max_size: int = 4) -> None:
        from psycopg_pool import ConnectionPool

        super().__init__(url)
        self.pool = ConnectionPool(
            url, min_size=1, max_size=max_size, open=False, timeout=CONNECT_TIMEOUT_S * 3,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S}, check=ConnectionPool.check_connection,
        )  # fmt: skip
        self._opened = False
        self._opening = threading.Lock()

    @contextlib.contextmanager
    def _connection_for_work(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool (opened on first use), checked before it is handed
        out; the pool replaces one the work lost."""
        with self._opening:
            if not self._opened:
                self.pool.open(wait=False)
                self._opened = True
        with self.pool.connection() as connection:
            yield connection

    def close(self) -> None:
        with self._opening:
            if self._opened:
                self.pool.close()
                self._opened = False


def _apply_queue_schema(db: psycopg.Connection[Any]) -> None:
    """procrastinate's tables and functions, as its own `procrastinate schema --apply`
    makes them, unless the database has them already (another application's queue)."""
    from procrastinate.schema import SchemaManager

    found = db.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    if not found or not found[0]:
        db.execute(SchemaManager.get_schema().encode())  # the library's DDL, no parameters


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
