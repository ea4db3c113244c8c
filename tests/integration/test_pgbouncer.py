"""PostgreSQL behind a real PgBouncer in transaction pooling mode: sends, claims, finishes and
`get()` all go through the pooler, with LISTEN on a direct connection or with polling only.

The fixture starts Debian's `pgbouncer` binary on a free local port from a temporary config.
The sender and the worker are subprocesses whose DATABASE_URL points at the pooler (see the end
of tests/settings.py); PgBouncer's own statistics show that their transactions went through it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from ..conftest import ROOT, database_url, worker_command, worker_env

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PgBouncer pools PostgreSQL connections"),
    pytest.mark.skipif(PGBOUNCER is None, reason="needs the pgbouncer binary (Debian: apt-get install pgbouncer)"),
]

SENDER = """
import json, sys
import django
django.setup()
from django.db import connections
from tests.taskapp.tasks import add, flaky
handles = [add.send(i, 1).unwrap() for i in range(40)]
handles += add.send_many([(i, 2) for i in range(40)]).unwrap()
retried = flaky.send("pgbouncer", 1).unwrap()
results = [h.get(timeout_ms=60_000) for h in handles]
again = retried.get(timeout_ms=60_000)
print(json.dumps({
    "sums": [r.unwrap() if r.is_ok() else repr(r) for r in results],
    "retried": again.unwrap() if again.is_ok() else repr(again),
    "listen_vendor_alias": __import__("horsies_django.broker", fromlist=["get_broker"]).get_broker().listen_alias,
}))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[int]:
    """A PgBouncer in transaction mode on a free port, in front of the test server; its port."""
    assert PGBOUNCER is not None
    settings = connection.settings_dict
    workdir = Path(tempfile.mkdtemp(prefix="horsies-pgbouncer-"))
    root = os.geteuid() == 0
    if root:  # pgbouncer refuses to run as root; it drops to the postgres user (-u), who writes here
        shutil.chown(workdir, "postgres")
    port = _free_port()
    (workdir / "users.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={settings.get("HOST") or "127.0.0.1"} port={settings.get("PORT") or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir / "users.txt"}
admin_users = postgres
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
"""
    )
    log = workdir / "stderr.log"
    user = ["-u", "postgres"] if root else []
    with log.open("w") as stderr:
        process = subprocess.Popen([PGBOUNCER, *user, str(workdir / "pgbouncer.ini")], stderr=stderr)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, f"pgbouncer exited: {log.read_text()}"
            assert time.monotonic() < deadline, "pgbouncer did not start listening"
            time.sleep(0.1)
    try:
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _transactions_through(port: int, database: str) -> int:
    """Transactions PgBouncer has run for `database` (its admin console speaks only simple queries)."""
    out = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "pgbouncer",
            "-AtF",
            "|",
            "-c",
            "SHOW STATS",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for line in out.splitlines():
        fields = line.split("|")
        if fields[0] == database:
            return int(fields[1])  # total_xact_count
    return 0


@pytest.mark.parametrize(("listen", "pool"), [("poll", "threads"), ("direct", "processes")])
def test_sends_claims_finishes_and_get_through_pgbouncer(pgbouncer: int, listen: str, pool: str) -> None:
    direct = database_url()
    pooled = direct.replace(f":{connection.settings_dict.get('PORT') or 5432}/", f":{pgbouncer}/")
    assert pooled != direct
    env = {**worker_env(), "DATABASE_URL": pooled, "HORSIES_TEST_DIRECT_URL": direct, "HORSIES_TEST_LISTEN": listen}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "testproject")])
    database = connection.settings_dict["NAME"]
    before = _transactions_through(pgbouncer, database)
    worker = subprocess.Popen(
        worker_command("--pool", pool, "--concurrency", "4"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sender = subprocess.run(
            [sys.executable, "-c", SENDER], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180
        )
    finally:
        worker.terminate()
        _, worker_log = worker.communicate(timeout=60)
    assert sender.returncode == 0, sender.stderr[-3000:]
    assert worker.returncode == 0, worker_log[-3000:]
    outcome = json.loads(sender.stdout.strip().splitlines()[-1])
    assert outcome["sums"] == [i + 1 for i in range(40)] + [i + 2 for i in range(40)]
    assert outcome["retried"] == 2  # failed once, retried through the pooler, then finished
    assert outcome["listen_vendor_alias"] == ("direct" if listen == "direct" else "default")
    assert "database error" not in worker_log, worker_log[-3000:]
    # Sends, claims, finishes and reads ran as transactions in the pooler.
    assert _transactions_through(pgbouncer, database) - before > 80
