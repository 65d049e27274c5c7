"""Istio features, one module each: what problem it solves, its parameters, its gate, the objects that turn it on
(merged into what the cluster has), its rollback and how to detect it; plus the merge helpers and the invariants
every rendering must keep. Registering a feature is adding its module."""
