"""Alerts out to the rest of the SOC: OCSF Detection Findings (``ocsf``), their export (``export``) and the
Amazon Security Lake writer (``security_lake``)."""
