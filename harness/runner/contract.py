"""What the controller and the runner exchange: the job spec the controller writes and the
result document the runner prints, with their schema versions. Shipped to the device with
the runner; standard library only, Python 3.8+.

Format history:
  harness.job/1    -- the job spec: model, runtime, provider, threads, warmup, stop rule,
                      inputs, eval set, samplers, preparation; from the watchdog on it also
                      carries `deadline_s` and `running_file`.
  harness.result/1 -- the result document: status, error, runtime, load/first ms,
                      latencies_ns, memory checkpoints and samples, device state before and
                      after, power readings and windows, eval outputs.
  harness.facts/1  -- `--facts`: platform, Python, runtimes, disk, CPUs.
"""

RESULT_SCHEMA = "harness.result/1"
FACTS_SCHEMA = "harness.facts/1"
JOB_SCHEMA = "harness.job/1"


class JobError(Exception):
    """A failure of this job with a message meant for the user."""
