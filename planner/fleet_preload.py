"""Imported by the fleet's fork server (planner.fleet), and for nothing else: it fills the caches that every reading
process would otherwise fill first (the feature registry, the checks of Istio's shapes), so that each process
forked from the server starts with them (a tenth of a second each)."""
from cluster import shapes
from features.base import registry

registry()
shapes.istio_checks()
