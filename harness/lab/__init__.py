"""One queue of jobs for a lab, served by every controller: `harness submit` queues a
run's jobs (queue.py), `harness worker` runs them on the devices attached to its controller
(serve.py), and the run is made whole and published once every job has its record
(assemble.py; `harness wait` follows it). The queue is procrastinate's, in the shared
store's PostgreSQL; the jobs' own rows and the device leases are in ledger.py."""
