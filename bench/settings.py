"""Settings for the benchmarks: the demo project plus the benchmark tasks."""

import json
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

# bench/speed.py's measures: queues with caps, and schedules, for the worker processes they start.
if os.environ.get("HORSIES_BENCH_QUEUES"):
    HORSIES["QUEUES"] = json.loads(os.environ["HORSIES_BENCH_QUEUES"])
if os.environ.get("HORSIES_BENCH_SCHEDULES"):
    HORSIES["SCHEDULES"] = json.loads(os.environ["HORSIES_BENCH_SCHEDULES"])
