"""aiwarden's detection library: pure Python, no Kafka / Faust.

* ``detectors.base.Detector``: the interface (``state_key`` / ``detect`` over normalized events,
  per-entity JSON state, deterministic finding ids, one finding per entity and window);
* ``detectors.config.DetectionConfig``: every threshold and named allowlist, frozen;
* ``detectors.registry``: ``DETECTORS`` (the one dict), ``build_all``, ``by_class``, ``detect_all``;
* ``detectors.rules.*``: rule detectors; ``detectors.anomaly.*``: windowed River detectors
  (``AnomalyModel`` with ``learn_one`` / ``score_one`` / ``dumps`` / ``loads``);
* ``detectors.inventory``: the AI inventory (AIBOM) and its CycloneDX 1.6 export;
* ``detectors.correlation``: findings -> prioritized alerts per anchor entity.
"""
