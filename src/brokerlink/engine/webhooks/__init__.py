"""Signed webhooks: the Standard Webhooks signing shared with alerts, and users' event endpoints (ADR 0028)."""
