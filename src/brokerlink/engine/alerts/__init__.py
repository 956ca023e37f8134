"""Alerts (issue 6 item 4, ADR 0019): rules evaluated in the server on the observations of
:mod:`brokerlink.observe`, stored and deduplicated alerts, the admin channel's events, and signed
webhooks."""
