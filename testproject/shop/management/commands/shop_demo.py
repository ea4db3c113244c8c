"""Send the seed's example orders, run a worker until the queue is empty, print each typed result."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from horsies_django import Err, Ok
from horsies_django.worker import Worker
from shop.models import Order, OrderItem
from shop.tasks import validate_order

EXAMPLE_ORDERS = [
    Order(
        order_id="ORD-1001",
        customer_email="ada@example.com",
        items=[OrderItem(sku="BOOK-42", quantity=2)],
        shipping_address="1 Analytical Way, London",
        shipping_method="express",
    ),
    Order(
        order_id="", customer_email="nobody@example.com", items=[OrderItem(sku="PEN", quantity=1)], shipping_address="?"
    ),
    Order(order_id="ORD-1003", customer_email="grace@example.com", items=[], shipping_address="7 Cobol St"),
]


class Command(BaseCommand):
    help = "Run the horsies_django demo: migrate, send example orders, run the worker, print the results."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        handles = []
        for order in EXAMPLE_ORDERS:
            match validate_order.send(order):
                case Ok(handle):
                    self.stdout.write(f"sent {order.order_id or '(no id)'} -> task {handle.task_id}")
                    handles.append((order, handle))
                case Err(send_err):
                    self.stdout.write(f"Send failed: {send_err.code} - {send_err.message}")
        stats = Worker(burst=True).run()
        self.stdout.write(f"worker ran {stats.finished} task(s)\n")
        for order, handle in handles:
            result = handle.get(timeout_ms=5000)
            if result.is_ok():
                validated = result.unwrap()
                self.stdout.write(
                    f"{order.order_id}: ok  {type(validated).__name__}(order_id={validated.order_id!r}, "
                    f"items={len(validated.items)}, validated_at={validated.validated_at:%H:%M:%S})"
                )
            else:
                error = result.unwrap_err()
                self.stdout.write(f"{order.order_id or '(no id)'}: err {error.error_code}: {error.message}")
