"""The seed's example task, unchanged but for the import lines."""

from datetime import datetime

from horsies_django import TaskError, TaskResult, app

from .models import Order, ValidatedOrder


@app.task("validate_order", queue_name="standard")
def validate_order(
    order: Order,
) -> TaskResult[ValidatedOrder, TaskError]:
    if not order.order_id:
        return TaskResult(
            err=TaskError(
                error_code="INVALID_ORDER_ID",
                message="Order ID is required",
            )
        )
    if not order.items:
        return TaskResult(
            err=TaskError(
                error_code="EMPTY_ORDER",
                message="Order must contain at least one item",
            )
        )
    validated = ValidatedOrder(
        order_id=order.order_id,
        customer_email=order.customer_email,
        items=order.items,
        shipping_address=order.shipping_address,
        shipping_method=order.shipping_method,
        validated_at=datetime.now(),
    )
    return TaskResult(ok=validated)
