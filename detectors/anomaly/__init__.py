"""Anomaly detectors: windowed per-entity features scored by a class-level River model, plus hard guards."""
