"""Admin and auditor routes: the audit trail, alerts."""
