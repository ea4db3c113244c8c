"""Settings for the benchmarks: the demo project plus the benchmark tasks."""

import os

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "bench.soakapp"]  # noqa: F405

HORSIES = {
    "WORKER": {
        "heartbeat_s": float(os.environ.get("HORSIES_BENCH_HEARTBEAT_S", "1")),
        "lease_s": float(os.environ.get("HORSIES_BENCH_LEASE_S", "5")),
        "max_crash_reruns": int(os.environ.get("HORSIES_BENCH_MAX_CRASH_RERUNS", "10")),
        "poll_interval_s": 0.05,
    },
}
