"""The test matrix CI runs (`.ci/run` calls these sessions): `nox -l` lists them.

    tests-5.2   Django 5.2 LTS on Python 3.11: the suite on SQLite, then on PostgreSQL
    tests-6.0   Django 6.0 on Python 3.12+: the suite on SQLite, except the `soak` tests
    tests-6.1   Django 6.1 on Python 3.12+: the suite on SQLite, except the `soak` tests

The 6.x legs deselect the tests marked `soak` (several worker processes for seconds at a time:
throughput, caps and schedules across processes). They prove the queue's behaviour under real
concurrency, which the Django version does not change, and tests-5.2 runs them on both databases.

PostgreSQL comes from DATABASE_URL_PG (default postgres://postgres@127.0.0.1:5432/test).
TEST_DB_NAME, if set, prefixes each leg's test database so parallel runs do not share one.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

nox.options.sessions = ["tests-5.2", "tests-6.0", "tests-6.1"]
nox.options.download_python = "never"  # no downloads here: use interpreters already installed
nox.options.reuse_venv = "yes"

# The 6.x legs leave out the multi-process soak tests, which tests-5.2 runs on both databases.
NOT_SOAK = ("-m", "not soak")
POSTGRES_URL = os.environ.get("DATABASE_URL_PG", "postgres://postgres@127.0.0.1:5432/test")


def python(minor: int) -> str:
    """Python 3.`minor` if installed, else the next newer one: on the PATH, else under pyenv (whose
    shims do not run versions pyenv has not selected)."""
    for m in range(minor, 14):
        pyenv = sorted(glob.glob(f"/root/.pyenv/versions/3.{m}.*/bin/python3"))
        for candidate in filter(None, [shutil.which(f"python3.{m}"), *pyenv]):
            check = subprocess.run([candidate, "-c", "pass"], capture_output=True)  # noqa: S603
            if check.returncode == 0:
                return candidate
    return f"3.{minor}"  # nox reports it missing


def suite(session: nox.Session, database_url: str, name: str, *args: str) -> None:
    """Run pytest with ARGS, then the session's own arguments (so a -m given after -- wins)."""
    prefix = os.environ.get("TEST_DB_NAME") or "test"
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        *args,
        *session.posargs,
        env={"DATABASE_URL": database_url, "TEST_DB_NAME": f"{prefix}_{name}"},
        success_codes=[0, 5],  # 5: nothing collected, e.g. a -k that matches no test here
    )


def install(session: nox.Session, django: str) -> None:
    session.install("-e", ".[test]", django)
    session.run("python", "-c", "import django; print('Django', django.get_version())")


@nox.session(name="tests-5.2", python=python(11))
def tests_52(session: nox.Session) -> None:
    install(session, "django>=5.2,<5.3")
    suite(session, "", "d52")
    suite(session, POSTGRES_URL, "d52")


@nox.session(name="tests-6.0", python=python(12))
def tests_60(session: nox.Session) -> None:
    install(session, "django>=6.0,<6.1")
    suite(session, "", "d60", *NOT_SOAK)


@nox.session(name="tests-6.1", python=python(12))
def tests_61(session: nox.Session) -> None:
    install(session, "django>=6.1,<6.2")
    suite(session, "", "d61", *NOT_SOAK)
