"""The process pool: tasks handed to children in batches, and every isolation promise kept.

The first tests drive `ProcessTaskPool` directly with hand-made claims (the pool never touches
the queue), so that they can say exactly which child held which task. The rest run real
`horsies_worker` subprocesses against the test database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from horsies_django import OperationalErrorCode, OutcomeCode
from horsies_django.broker import ClaimedTask
from horsies_django.models import Task, TaskAttempt
from horsies_django.worker.pools import Completion
from horsies_django.worker.procpool import ProcessTaskPool
from tests.taskapp.models import Run
from tests.taskapp.tasks import add, crash, record, sleep, times_out

from ..conftest import ROOT, start_worker, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def claimed(name: str, **arguments: object) -> ClaimedTask:
    return ClaimedTask(
        id=str(uuid.uuid4()), name=name, arguments=arguments, attempt=1, claim_token=1, max_retries=0, priority=100
    )


@pytest.fixture
def make_pool() -> Iterator[Callable[..., ProcessTaskPool]]:
    pools: list[ProcessTaskPool] = []

    def make(size: int, **options: int) -> ProcessTaskPool:
        pool = ProcessTaskPool(size, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close(kill=True)


def collect(pool: ProcessTaskPool, count: int, timeout: float = 30) -> dict[str, Completion]:
    """Wait until `count` tasks have ended; their completions by task id."""
    ended: dict[str, Completion] = {}
    deadline = time.monotonic() + timeout
    while len(ended) < count:
        assert time.monotonic() < deadline, f"only {len(ended)} of {count} tasks ended"
        for completion in pool.wait(0.1):
            assert completion.task_id not in ended, "a task ended twice"
            ended[completion.task_id] = completion
    return ended


def ok_value(completion: Completion) -> object:
    assert completion.outcome is not None and completion.outcome.ok, completion
    return json.loads(completion.outcome.result_json)["ok"]


def started(pool: ProcessTaskPool, *tasks: ClaimedTask) -> bool:
    pool._pump(0)  # read what the children wrote; completions stay for the next wait()
    return all(pool.start_of(task.id) is not None for task in tasks)


def child_pids(pool: ProcessTaskPool) -> list[int]:
    return [child.pid for child in pool._children]


# -- the pool itself ------------------------------------------------------------------------


def test_a_child_takes_a_batch_and_reports_each_outcome_with_its_start() -> None:
    pool = ProcessTaskPool(1, prefetch=4)
    try:
        first = claimed("tests.sleep", ms=300)
        rest = [claimed("tests.add", a=i, b=1) for i in range(4)]
        assert pool.free_slots() == 5  # the running task and four queued behind it
        for task in [first, *rest]:
            pool.submit(task)
        ended = collect(pool, 5)
    finally:
        pool.close(kill=True)
    assert [ok_value(ended[task.id]) for task in rest] == [1, 2, 3, 4]
    # started_at is when each task began in its child, not when it was handed over: the adds
    # waited behind a 300 ms sleep.
    first_start = ended[first.id].started_at
    assert first_start is not None
    for task in rest:
        started = ended[task.id].started_at
        assert started is not None and started - first_start >= timedelta(milliseconds=300)


def test_a_crashing_child_costs_only_its_running_task_and_its_queue_goes_on(
    make_pool: Callable[..., ProcessTaskPool],
) -> None:
    pool = make_pool(1, prefetch=4)
    before = child_pids(pool)
    fatal = claimed("tests.crash", code=9)
    queued = [claimed("tests.add", a=i) for i in range(4)]
    for task in [fatal, *queued]:
        pool.submit(task)
    ended = collect(pool, 5)
    assert ended[fatal.id].outcome is None and not ended[fatal.id].released  # blamed: a crash
    # Queued in the same child, then run by its replacement.
    assert [ok_value(ended[task.id]) for task in queued] == [0, 1, 2, 3]
    assert child_pids(pool) != before


def test_stop_kills_only_the_child_running_that_task(make_pool: Callable[..., ProcessTaskPool]) -> None:
    pool = make_pool(2, prefetch=0)
    slow = claimed("tests.sleep", ms=1500)
    doomed = claimed("tests.sleep", ms=30000)
    pool.submit(slow)
    pool.submit(doomed)
    pool.wait(0)
    wait_until(lambda: started(pool, doomed, slow), what="both tasks to start")
    pids = child_pids(pool)
    assert pool.stop(doomed.id) is True
    survivor = [pid for pid in child_pids(pool) if pid in pids]
    assert len(survivor) == 1  # one child replaced, the other untouched
    ended = collect(pool, 1)
    assert list(ended) == [slow.id]
    assert ok_value(ended[slow.id]) == 1500
    assert pool.wait(0.3) == []  # nothing ever comes for the stopped task


def test_stop_of_a_queued_task_skips_it_without_killing_anyone(make_pool: Callable[..., ProcessTaskPool]) -> None:
    pool = make_pool(1, prefetch=4)
    ahead = claimed("tests.sleep", ms=1000)
    skipped = claimed("tests.add", a=1)
    behind = claimed("tests.add", a=2)
    for task in (ahead, skipped, behind):
        pool.submit(task)
    pool.wait(0)
    wait_until(lambda: started(pool, ahead), what="the first task to start")
    pids = child_pids(pool)
    assert pool.start_of(skipped.id) is None
    assert pool.stop(skipped.id) is True
    ended = collect(pool, 2)
    assert set(ended) == {ahead.id, behind.id}
    assert child_pids(pool) == pids
    assert pool.wait(0.3) == []


def test_an_idle_child_killed_from_outside_is_replaced_before_it_gets_work(
    make_pool: Callable[..., ProcessTaskPool],
) -> None:
    pool = make_pool(2, prefetch=2)
    victim = child_pids(pool)[0]
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.2)
    tasks = [claimed("tests.add", a=i) for i in range(6)]
    assert pool.free_slots() == 6
    assert victim not in child_pids(pool)
    for task in tasks:
        pool.submit(task)
    ended = collect(pool, 6)
    assert [ok_value(ended[task.id]) for task in tasks] == list(range(6))


def test_a_task_given_to_a_child_that_just_died_goes_to_its_replacement_uncounted(
    make_pool: Callable[..., ProcessTaskPool],
) -> None:
    pool = make_pool(1, prefetch=2)
    os.kill(child_pids(pool)[0], signal.SIGKILL)
    task = claimed("tests.add", a=5)
    pool.submit(task)  # handed to the dead child before the pool noticed: the write fails or is lost
    ended = collect(pool, 1)
    assert ok_value(ended[task.id]) == 5
    assert not ended[task.id].released


def test_max_tasks_per_child_is_never_exceeded_with_prefetch(make_pool: Callable[..., ProcessTaskPool]) -> None:
    pool = make_pool(1, prefetch=8, max_tasks_per_child=3)
    tasks = [claimed("tests.record", key=f"m{i}") for i in range(7)]
    for task in tasks:
        pool.submit(task)
    collect(pool, 7)
    pids = list(Run.objects.order_by("at", "id").values_list("worker_pid", flat=True))
    assert len(pids) == 7
    assert [pids.count(pid) for pid in dict.fromkeys(pids)] == [3, 3, 1]


def test_a_pool_started_beside_other_threads_uses_this_process_database(
    make_pool: Callable[..., ProcessTaskPool],
) -> None:
    # Another thread makes the pool start its template as a fresh interpreter instead of a fork;
    # its children must still use the database this process uses (here, the test database).
    release = threading.Event()
    bystander = threading.Thread(target=release.wait)
    bystander.start()
    try:
        pool = make_pool(1)
        assert pool_template_was_spawned(pool)
        for i in range(3):
            pool.submit(claimed("tests.record", key=f"spawned-{i}"))
        collect(pool, 3)
    finally:
        release.set()
        bystander.join()
    assert sorted(Run.objects.values_list("key", flat=True)) == ["spawned-0", "spawned-1", "spawned-2"]


def pool_template_was_spawned(pool: ProcessTaskPool) -> bool:
    return any(
        getattr(template, "process", None) is not None for template in vars(pool).values() if hasattr(template, "spawn")
    )


# -- real workers -------------------------------------------------------------------------


def worker_children(worker_pid: int) -> list[int]:
    """The pids of a worker's task children: the children of its template process."""

    def children(pid: int) -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
        return found

    return [child for template in children(worker_pid) for child in children(template)]


def stop(worker: subprocess.Popen[str]) -> tuple[int, str]:
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    return worker.returncode, err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the children through /proc")
def test_kill_9_of_an_idle_child_then_tasks_run_once_uncounted() -> None:
    worker = start_worker("--concurrency", "2")
    try:
        wait_until(lambda: len(worker_children(worker.pid)) == 2, what="two children")
        victim = worker_children(worker.pid)[0]
        os.kill(victim, signal.SIGKILL)
        handles = [record.send(f"after-kill-{i}").unwrap() for i in range(2)]
        results = [handle.get(timeout_ms=20000) for handle in handles]
        assert worker.poll() is None, "the worker died with its child"
        wait_until(lambda: len(worker_children(worker.pid)) == 2, what="the child to be replaced")
        assert victim not in worker_children(worker.pid)
    finally:
        code, err = stop(worker)
    assert code == 0, err
    assert [result.unwrap() for result in results] == ["after-kill-0", "after-kill-1"]
    for handle in handles:
        row = Task.objects.get(pk=handle.task_id)
        assert (row.status, row.attempt, row.crash_reruns) == ("COMPLETED", 1, 0)
        assert list(TaskAttempt.objects.filter(task_id=handle.task_id).values_list("number", "outcome")) == [
            (1, "COMPLETED")
        ]
    assert Run.objects.filter(key__startswith="after-kill-").count() == 2


def test_a_timeout_kills_only_its_child_and_the_neighbour_completes() -> None:
    neighbour = record.send("neighbour", sleep_ms=1500).unwrap()
    late = times_out.send(10000, key="late").unwrap()
    worker = start_worker("--concurrency", "2", "--prefetch", "0")
    try:
        assert late.get(timeout_ms=20000).unwrap_err().error_code == OutcomeCode.TASK_TIMEOUT
        assert neighbour.get(timeout_ms=20000).unwrap() == "neighbour"
    finally:
        code, err = stop(worker)
    assert code == 0, err
    row = Task.objects.get(pk=neighbour.task_id)
    assert (row.status, row.attempt, row.crash_reruns) == ("COMPLETED", 1, 0)
    assert Run.objects.filter(key="late").count() == 0


def test_a_crash_blames_one_task_and_the_tasks_queued_behind_it_run_once() -> None:
    fatal = crash.send(9).unwrap()
    innocent = [add.send(i, 1).unwrap() for i in range(5)]
    worker = start_worker("--concurrency", "1", "--prefetch", "8")
    try:
        assert fatal.get(timeout_ms=30000).unwrap_err().error_code == OperationalErrorCode.WORKER_CRASHED
        assert [handle.get(timeout_ms=20000).unwrap() for handle in innocent] == [1, 2, 3, 4, 5]
    finally:
        code, err = stop(worker)
    assert code == 0, err
    for handle in innocent:
        row = Task.objects.get(pk=handle.task_id)
        assert (row.attempt, row.crash_reruns) == (1, 0)
        assert list(TaskAttempt.objects.filter(task_id=handle.task_id).values_list("outcome", flat=True)) == [
            "COMPLETED"
        ]
    assert Task.objects.get(pk=fatal.task_id).crash_reruns == 2


def test_started_at_is_when_the_task_began_in_its_child_not_its_claim() -> None:
    first = sleep.send(800).unwrap()
    second = add.send(1, 1).unwrap()
    worker = start_worker("--concurrency", "1", "--burst")
    code, err = stop_when_done(worker)
    assert code == 0, err
    a, b = Task.objects.get(pk=first.task_id), Task.objects.get(pk=second.task_id)
    assert a.claimed_at == b.claimed_at  # one claim took both
    assert a.started_at is not None and b.started_at is not None and b.claimed_at is not None
    assert b.started_at - b.claimed_at >= timedelta(milliseconds=800)  # it waited behind the sleep
    assert b.started_at >= a.started_at + timedelta(milliseconds=800)
    assert TaskAttempt.objects.get(task_id=second.task_id).started_at == b.started_at


def stop_when_done(worker: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = worker.communicate(timeout=60)
    return worker.returncode, err


# -- a script without `if __name__ == "__main__":` -------------------------------------------

SCRIPT = """
import os, sys, threading, time
sys.path[:0] = [{root!r}, {testproject!r}]
with open({marker!r}, "a") as marker:
    marker.write(f"{{os.getpid()}}\\n")
import django
django.setup()
from django.core.management import call_command
if {with_thread!r}:
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
call_command("horsies_worker", "--burst", "--concurrency", "2", "-v", "0")
"""


@pytest.mark.parametrize("with_thread", [False, True], ids=["forked-template", "fresh-template"])
def test_a_script_without_a_main_guard_is_not_run_again_by_the_children(tmp_path: Path, with_thread: bool) -> None:
    marker = tmp_path / "imports.txt"
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            SCRIPT.format(
                root=str(ROOT), testproject=str(ROOT / "testproject"), marker=str(marker), with_thread=with_thread
            )
        )
    )
    handles = [record.send(f"guardless-{i}").unwrap() for i in range(4)]
    completed = subprocess.run(
        [sys.executable, str(script)], env=worker_env(), cwd=tmp_path, capture_output=True, text=True, timeout=90
    )
    assert completed.returncode == 0, completed.stderr
    assert len(marker.read_text().splitlines()) == 1  # the script ran once: in the supervisor only
    assert [handle.get(timeout_ms=1000).unwrap() for handle in handles] == [f"guardless-{i}" for i in range(4)]
    assert Run.objects.filter(key__startswith="guardless-").count() == 4
    assert TaskAttempt.objects.filter(outcome="COMPLETED").count() == 4


def test_a_dead_template_is_replaced_when_a_child_must_be_started(make_pool: Callable[..., ProcessTaskPool]) -> None:
    pool = make_pool(1, prefetch=0)
    os.kill(pool._template.pid, signal.SIGKILL)
    os.kill(child_pids(pool)[0], signal.SIGKILL)
    task = claimed("tests.add", a=7)
    pool.submit(task)
    assert ok_value(collect(pool, 1)[task.id]) == 7


def test_sigterm_gives_back_the_tasks_queued_in_a_child_at_once() -> None:
    handles = [record.send(f"queued-{i}", sleep_ms=1500).unwrap() for i in range(4)]
    worker = start_worker("--concurrency", "1", "--prefetch", "8")
    wait_until(lambda: Task.objects.filter(status="RUNNING").count() == 4, what="one claim of all four")
    time.sleep(0.5)  # let the first one start; the assertions hold either way
    code, err = stop(worker)
    assert code == 0, err
    rows = [Task.objects.get(pk=handle.task_id) for handle in handles]
    completed = [row for row in rows if row.status == "COMPLETED"]
    given_back = [row for row in rows if row.status == "PENDING"]
    assert len(completed) + len(given_back) == 4
    assert len(given_back) >= 3  # all but the one that had started
    assert all(row.attempt == 0 for row in given_back)
    assert not TaskAttempt.objects.filter(task_id__in=[row.id for row in given_back]).exists()
    assert Run.objects.filter(key__startswith="queued-").count() == len(completed)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1e400", "abc", "\x00", "\ud800", ""])
def test_prefetch_refuses_what_is_not_a_count(value: str) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="prefetch"):
        call_command("horsies_worker", "--burst", "--prefetch", value)


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), ("2", TypeError), (None, TypeError)])
def test_worker_refuses_a_bad_prefetch_at_once(value: object, error: type[Exception]) -> None:
    from horsies_django.worker import Worker

    with pytest.raises(error):
        Worker(pool="processes", prefetch=value)  # type: ignore[arg-type]
