"""Outgoing webhooks to the business backend (docs/webhooks.md)."""

from livecast.webhooks.client import WebhookMetrics, Webhooks

__all__ = ["WebhookMetrics", "Webhooks"]
