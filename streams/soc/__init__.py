"""The SOC workflow: sign-in and roles, alert triage, approvals, exceptions and the audit log."""
