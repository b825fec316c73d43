"""The POSIX-shell side of running a command on a device: a wrapper that reports the
command's pid and process group on stderr, and a killer for that group. Shared by the
transports that reach a device's shell (ssh, adb); works with dash, bash and Android's mksh."""

from __future__ import annotations

import shlex

# Prints "harness-pid:<pid> <pgid>" on stderr, then runs the command in its process group
# and exits with its status — 128 + N when signal N killed it: sshd reports a death by signal
# as `exit-signal`, which paramiko drops, so the shell turns it into a status that arrives.
WRAPPER = (
    'pgid=$(cut -d" " -f5 /proc/$$/stat 2>/dev/null || echo $$); '
    'echo "harness-pid:$$ $pgid" >&2; "$@"; exit $?'
)
# TERM the process group, wait up to 2 s, then KILL. Both spellings of a group kill, since
# dash only takes `kill -s SIG -- -PGID` and some shells only `kill -SIG -PGID`.
KILLER = (
    'group() { kill -s "$1" -- "-$2" 2>/dev/null || kill -"$1" "-$2" 2>/dev/null; }; '
    'group TERM "$1" || kill -TERM "$2" 2>/dev/null; i=0; '
    'while kill -0 "$2" 2>/dev/null && [ "$i" -lt 20 ]; do sleep 0.1; i=$((i+1)); done; '
    'group KILL "$1"; kill -KILL "$2" 2>/dev/null; true'
)
MARKER = "harness-pid:"
# KILL every process whose command line contains "$1" (but this shell): what is left of a
# job whose connection dropped, found through /proc (no pkill on every device).
KILL_BY_ARGUMENT = (
    'for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$$" ] && continue; '
    'case "$(tr "\\000" " " < "$d/cmdline" 2>/dev/null)" in *"$1"*) kill -9 "$p";; esac; '
    "done 2>/dev/null; true"
)


def kill_command(marker_stream: bytes) -> str | None:
    """The shell command that kills the process group the wrapper reported on the first
    line of `marker_stream`; None when it reported none."""
    pid, pgid = parse_marker(marker_stream)
    if pid is None:
        return None
    return shlex.join(["sh", "-c", KILLER, "harness-kill", str(pgid), str(pid)])


def parse_marker(stderr: bytes) -> tuple[int | None, int | None]:
    first = stderr.split(b"\n", 1)[0].decode(errors="replace")
    if not first.startswith(MARKER):
        return None, None
    parts = first[len(MARKER) :].split()
    try:
        pid = int(parts[0])
        pgid = int(parts[1]) if len(parts) > 1 else pid
    except (ValueError, IndexError):
        return None, None
    return pid, pgid


def strip_marker(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    if text.startswith(MARKER):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text


# What runners of earlier controllers left under "$1" (the workdir's jobs/ folder): each
# runner keeps `<job>.running` ("pid pgid job_id") beside its spec while it runs. A pid
# whose command line still names that spec is such a runner, and so is one whose command
# line is a persistent runner's (a child it forked, in a process group of its own): its
# process group (samplers included) is killed and its job printed. Then the old specs and
# scratch files go.
END_LEFTOVERS = (
    'for f in "$1"/*/*.running; do [ -f "$f" ] || continue; '
    'read -r pid pgid job < "$f"; spec="${f%.running}.json"; '
    'case "$(tr "\\000" " " < "/proc/$pid/cmdline" 2>/dev/null)" in *"$spec"*|*" --serve"*) '
    'kill -s KILL -- "-$pgid" 2>/dev/null || kill -KILL "-$pgid" 2>/dev/null; '
    'echo "ended $job";; esac; done; rm -rf "$1"; true'
)
