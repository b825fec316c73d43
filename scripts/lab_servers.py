"""A shared store to try the lab features on one machine: a throwaway PostgreSQL and
SeaweedFS (S3) on 127.0.0.1 (tests/servers.py), the run index migrated and its object store
named. It prints what to export in another shell, and stops both (removing their folders)
on Ctrl-C. A team points the harness at its own servers instead: see the README.

    make lab-servers
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import postgres_server, seaweedfs_server  # noqa: E402


def main() -> None:
    harness = str(Path(sys.executable).parent / "harness")
    with postgres_server() as pg, seaweedfs_server() as s3:
        environment = {**os.environ, **s3.credentials(), "HARNESS_STORE": pg.url}
        subprocess.run([harness, "store", "migrate"], env=environment, check=True)
        subprocess.run(
            [harness, "store", "init", "--objects", s3.objects_url], env=environment, check=True
        )
        print("\nthe shared store is up; in another shell:\n")
        for key in ("HARNESS_STORE", *s3.credentials()):
            print(f"  export {key}={environment[key]}")
        print("\nCtrl-C stops both servers and removes their data.", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            print("\nstopping")


if __name__ == "__main__":
    main()
