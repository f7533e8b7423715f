"""Process helpers shared by bench/run.py and bench/scaling.py."""

import os
import socket


def free_port():
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU seconds of a running process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def sluice_catch_up(a, brokers, rows, rows_per_message, *extra):
    """The ceilings bench's `--mode sluice` command catching up on the events topic
    `events-ipc` (memory cap 1 GiB), plus `extra` arguments."""
    return [a.ceilings, "--brokers", brokers, "--dataset", "events", "--rows-per-message",
            str(rows_per_message), "--mode", "sluice", "--topic", "events-ipc", "--rows",
            str(rows), "--memory-cap-mib", "1024", *extra]
