"""Webhooks: signed event notifications to publishers' and customers' endpoints (issue 11)."""
