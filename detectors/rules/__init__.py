"""Rule detectors: conditions over single events (plus small per-entity state), tuned by allowlists."""
