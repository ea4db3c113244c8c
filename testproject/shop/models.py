"""The demo shop's order types: plain pydantic models, as the seed uses them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class OrderItem(BaseModel):
    sku: str
    quantity: int


class Order(BaseModel):
    order_id: str
    customer_email: str
    items: list[OrderItem]
    shipping_address: str
    shipping_method: str = "standard"


class ValidatedOrder(BaseModel):
    order_id: str
    customer_email: str
    items: list[OrderItem]
    shipping_address: str
    shipping_method: str
    validated_at: datetime
