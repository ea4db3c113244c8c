"""An hour of a small shop's tasks, written straight into the tables, for screenshots and dashboards.

The rows look like what workers leave behind (attempts, results, tracebacks, worker records), so the
admin pages show what an operator would see on a busy afternoon. Deterministic: same rows every run.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from horsies_django.models import Schedule, Task, TaskAttempt, WorkerProcess
from horsies_django.types.grouping import group_key

TRACEBACK = """Traceback (most recent call last):
  File "/srv/shop/horsies_django/worker/execute.py", line 88, in execute
    result = task.fn(**arguments)
  File "/srv/shop/shop/tasks.py", line 41, in charge_card
    receipt = gateway.charge(order.order_id, order.total, currency=order.currency)
  File "/srv/shop/shop/payments.py", line 117, in charge
    response = self.session.post(self.url, json=payload, timeout=self.timeout)
  File "/usr/lib/python3/dist-packages/requests/sessions.py", line 637, in post
    return self.request("POST", url, data=data, json=json, **kwargs)
requests.exceptions.ConnectTimeout: HTTPSConnectionPool(host='pay.example.com', port=443): \
Max retries exceeded with url: /v2/charges (connect timeout=5)
"""

KINDS = [
    # name, queue, priority, share of traffic, typical seconds
    ("shop.validate_order", "critical", 1, 0.34, 0.08),
    ("shop.charge_card", "critical", 1, 0.22, 1.4),
    ("shop.send_receipt", "emails", 100, 0.26, 0.6),
    ("shop.sync_inventory", "standard", 50, 0.14, 3.2),
    ("reports.daily_sales", "default", 100, 0.04, 14.0),
]
FAILURES = [
    ("PAYMENT_DECLINED", "Card declined by issuer for order {order} (insufficient funds)", ""),
    ("UNHANDLED_EXCEPTION", "ConnectTimeout: payment gateway did not answer within 5s", TRACEBACK),
    ("INVALID_ORDER_ID", "Order ID is required", ""),
    ("TASK_TIMEOUT", "the task ran longer than its timeout of 30000 ms", ""),
    ("WORKER_CRASHED", "the worker running it was lost 3 time(s)", ""),
]
WORKERS = [("web-1", 4121, ["critical", "standard"], 8), ("web-2", 3988, [], 4), ("batch-1", 77, ["default"], 2)]


@dataclass
class Seeded:
    failed_task_id: str
    worker_ids: list[str]


def _arguments(name: str, n: int) -> dict[str, object]:
    order = {"order_id": f"ORD-{1000 + n}", "items": 1 + n % 4, "total": f"{19.9 + (n % 9) * 11:.2f}"}
    if name == "shop.sync_inventory":
        return {"warehouse": ["AMS", "BER", "LIS"][n % 3], "full": n % 5 == 0}
    if name == "reports.daily_sales":
        return {"day": "2026-11-28", "recipients": ["ops@example.com"]}
    if name == "shop.send_receipt":
        return {"order_id": order["order_id"], "email": f"customer{n}@example.com"}
    return {"order": {**order, "currency": "EUR"}}


def seed(now: datetime | None = None) -> Seeded:
    """Write the rows; return the ids a test or a screenshot wants to open."""
    now = now or timezone.now()
    rng = random.Random(7)
    tasks: list[Task] = []
    attempts: list[TaskAttempt] = []
    worker_ids = [f"{host}:{pid}:{uuid.UUID(int=rng.getrandbits(128)).hex[:6]}" for host, pid, _, _ in WORKERS]
    names, weights = [k[0] for k in KINDS], [k[3] for k in KINDS]
    kinds = {k[0]: k for k in KINDS}
    n = 0
    for minute in range(60, 0, -1):
        wave = 0.6 + 0.4 * math.sin(minute / 7)
        for _ in range(int(10 + 14 * wave + rng.random() * 4)):
            n += 1
            name = rng.choices(names, weights)[0]
            _, queue, priority, _, seconds = kinds[name]
            finished = now - timedelta(minutes=minute) + timedelta(seconds=rng.random() * 60)
            took = timedelta(seconds=seconds * (0.5 + rng.random()))
            started = finished - took
            enqueued = started - timedelta(milliseconds=20 + rng.random() * 400)
            worker = worker_ids[rng.randrange(2)]
            failed = rng.random() < (0.035 if minute > 25 else 0.09 if minute > 2 else 0.3)
            failure = FAILURES[rng.choices(range(len(FAILURES)), [3, 4, 2, 1, 0.4])[0]] if failed else None
            if failure:  # the order number varies; the Errors page folds it into one group
                failure = (failure[0], failure[1].format(order=f"ORD-{1000 + n}"), failure[2])
            retried = name == "shop.charge_card" and rng.random() < 0.3
            task = Task(
                id=uuid.UUID(int=rng.getrandbits(128)),
                name=name,
                queue_name=queue,
                priority=priority,
                status="FAILED" if failure else "COMPLETED",
                arguments=_arguments(name, n),
                result={"err": {"error_code": failure[0], "message": failure[1]}} if failure else {"ok": True},
                error_code=failure[0] if failure else None,
                error_message=failure[1] if failure else "",
                error_traceback=failure[2] if failure else "",
                error_group=group_key(failure[0], failure[1]) if failure else None,
                attempt=2 if retried else 1,
                max_retries=2 if name == "shop.charge_card" else 0,
                run_at=enqueued,
                enqueued_at=enqueued,
                claimed_at=started,
                started_at=started,
                finished_at=finished,
                worker_id=worker,
                claim_token=2 if retried else 1,
            )
            tasks.append(task)
            if retried:
                first_end = started - timedelta(seconds=2)
                attempts.append(_attempt(task, 1, worker, first_end - took, first_end, FAILURES[1]))
            attempts.append(_attempt(task, task.attempt, worker, started, finished, failure))
    # The task the detail screenshot opens: a charge that failed on every one of its three tries.
    showcase = _showcase(now, worker_ids[0], attempts)
    tasks.append(showcase)
    tasks += _live(now, rng, worker_ids)
    Task.objects.bulk_create(tasks, batch_size=500)
    TaskAttempt.objects.bulk_create(attempts, batch_size=500)
    WorkerProcess.objects.bulk_create(
        [
            WorkerProcess(
                id=worker_id,
                hostname=f"{host}.shop.internal",
                pid=pid,
                queues=queues,
                concurrency=concurrency,
                pool="processes",
                started_at=now - timedelta(hours=5, minutes=12 * i),
                last_heartbeat_at=now - timedelta(seconds=2 + i) if host != "batch-1" else now - timedelta(minutes=4),
            )
            for i, (worker_id, (host, pid, queues, concurrency)) in enumerate(zip(worker_ids, WORKERS, strict=True))
        ]
    )
    _schedules(now, rng)
    return Seeded(failed_task_id=str(showcase.id), worker_ids=worker_ids)


def _schedules(now: datetime, rng: random.Random) -> None:
    """A healthy nightly report, and an inventory sync every 15 s whose last runs failed."""
    report = Task.objects.filter(name="reports.daily_sales", status="COMPLETED").order_by("-finished_at").first()
    code, message = "UNHANDLED_EXCEPTION", "ConnectionError: warehouse API at 10.0.4.17:8443 refused the connection"
    failed = []
    for i in range(6):
        at = now - timedelta(seconds=15 * (i + 1))
        slot = at.replace(microsecond=0)
        failed.append(
            Task(
                id=uuid.UUID(int=rng.getrandbits(128)),
                name="shop.sync_inventory",
                queue_name="standard",
                priority=50,
                status="FAILED",
                arguments={"warehouse": "AMS", "full": False},
                result={"err": {"error_code": code, "message": message}},
                error_code=code,
                error_message=message,
                error_group=group_key(code, message),
                attempt=1,
                run_at=slot,
                enqueued_at=slot,
                started_at=slot + timedelta(milliseconds=40),
                finished_at=slot + timedelta(seconds=2),
                claim_token=1,
                idempotency_key=f"schedule:sync-inventory:{slot.isoformat()}",
            )  # fmt: skip
        )
    Task.objects.bulk_create(failed)
    Schedule.objects.bulk_create(
        [
            Schedule(
                name="nightly-sales-report",
                task_name="reports.daily_sales",
                spec="0 3 * * *",
                last_slot_at=now.replace(hour=3, minute=0, second=0, microsecond=0) - timedelta(days=1),
                last_run_at=now.replace(hour=3, minute=0, second=1, microsecond=0) - timedelta(days=1),
                last_task_id=report.pk if report else None,
                next_run_at=now.replace(hour=3, minute=0, second=0, microsecond=0) + timedelta(days=1),
            ),  # fmt: skip
            Schedule(
                name="sync-inventory",
                task_name="shop.sync_inventory",
                spec="every 15s",
                last_slot_at=failed[0].run_at,
                last_run_at=failed[0].enqueued_at,
                last_task_id=failed[0].pk,
                next_run_at=failed[0].run_at + timedelta(seconds=15),
            ),  # fmt: skip
            Schedule(name="weekly-cleanup", task_name="reports.daily_sales", spec="0 4 * * 0", paused=True),
        ]
    )


def _attempt(
    task: Task, number: int, worker: str, started: datetime, finished: datetime, failure: tuple[str, str, str] | None
) -> TaskAttempt:
    return TaskAttempt(
        task=task,
        number=number,
        worker_id=worker,
        started_at=started,
        finished_at=finished,
        outcome="FAILED" if failure else "COMPLETED",
        error_code=failure[0] if failure else None,
        error_message=failure[1] if failure else "",
        error_traceback=failure[2] if failure else "",
    )


def _showcase(now: datetime, worker: str, attempts: list[TaskAttempt]) -> Task:
    enqueued = now - timedelta(seconds=24)
    code, message, traceback = FAILURES[1]
    task = Task(
        id=uuid.UUID("6f1c2a9e-4b7d-4c1e-9a53-2f8e0d6b7c41"),
        name="shop.charge_card",
        queue_name="critical",
        priority=1,
        status="FAILED",
        arguments={"order": {"order_id": "ORD-1042", "items": 3, "total": "129.90", "currency": "EUR"}},
        result={"err": {"error_code": code, "message": message, "data": {"gateway": "pay.example.com"}}},
        error_code=code,
        error_message=message,
        error_traceback=traceback,
        error_group=group_key(code, message),
        attempt=3,
        max_retries=2,
        run_at=enqueued + timedelta(seconds=16.1),
        enqueued_at=enqueued,
        claimed_at=enqueued + timedelta(seconds=16.15),
        started_at=enqueued + timedelta(seconds=16.2),
        finished_at=enqueued + timedelta(seconds=21.26),
        worker_id=worker,
        claim_token=3,
    )
    for number, (start, end) in enumerate([(0.05, 5.1), (7.12, 12.17), (16.2, 21.26)], start=1):
        attempts.append(
            TaskAttempt(
                task=task,
                number=number,
                worker_id=worker,
                started_at=enqueued + timedelta(seconds=start),
                finished_at=enqueued + timedelta(seconds=end),
                outcome="FAILED",
                error_code=code,
                error_message=message,
                error_traceback=traceback,
            )
        )
    return task


def _live(now: datetime, rng: random.Random, worker_ids: list[str]) -> list[Task]:
    """What is happening right now: running, waiting, and scheduled for later."""
    live = []
    plan = [("RUNNING", 5), ("PENDING", 9), ("SCHEDULED", 4)]
    for state, count in plan:
        for i in range(count):
            name, queue, priority, _, _ = KINDS[(i + len(live)) % len(KINDS)]
            enqueued = now - timedelta(seconds=25 + rng.random() * 40)
            running = state == "RUNNING"
            live.append(
                Task(
                    id=uuid.UUID(int=rng.getrandbits(128)),
                    name=name,
                    queue_name=queue,
                    priority=priority,
                    status="RUNNING" if running else "PENDING",
                    arguments=_arguments(name, 900 + len(live)),
                    attempt=1 if running else 0,
                    run_at=enqueued + timedelta(minutes=30) if state == "SCHEDULED" else enqueued,
                    enqueued_at=enqueued,
                    claimed_at=enqueued + timedelta(seconds=1) if running else None,
                    started_at=enqueued + timedelta(seconds=1) if running else None,
                    worker_id=worker_ids[i % 2] if running else None,
                    lease_expires_at=now + timedelta(seconds=50) if running else None,
                    claim_token=1 if running else 0,
                )
            )
    ended = [("CANCELLED", "TASK_CANCELLED", "cancelled"), ("EXPIRED", "TASK_EXPIRED", "not started before good_until")]
    for i, (status, code, message) in enumerate(ended):
        name, queue, priority, _, _ = KINDS[2 + i]
        enqueued = now - timedelta(seconds=9 + 13 * i)
        live.append(
            Task(
                id=uuid.UUID(int=rng.getrandbits(128)),
                name=name,
                queue_name=queue,
                priority=priority,
                status=status,
                arguments=_arguments(name, 950 + i),
                result={"err": {"error_code": code, "message": message}},
                error_code=code,
                error_message=message,
                run_at=enqueued,
                enqueued_at=enqueued,
                finished_at=enqueued + timedelta(seconds=3),
                good_until=enqueued + timedelta(seconds=3) if status == "EXPIRED" else None,
            )
        )
    return live
