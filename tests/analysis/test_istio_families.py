"""Check families ported from istioctl analyze (application UID, annotations, deprecation, VirtualService match
reachability, Kubernetes Gateway selectors, external control plane, mesh networks), on small inline clusters."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from planner.analysis.common import analyze, with_dummy_ingress
from planner.inventory import build_inventory
from planner.sources import files_snapshot


def run(tmp_path: Path, text: str, code: str, **kw) -> list:
    f = tmp_path / "input.yaml"
    f.write_text(text)
    inv = build_inventory(with_dummy_ingress(files_snapshot([f])), **kw)
    return [m for m in analyze(inv) if m.code == code]


def found(messages) -> Counter:
    return Counter(str(m.ref) for m in messages)


# ---------------------------------------------------------------- IST0144 InvalidApplicationUID

UID_INPUT = """
apiVersion: v1
kind: Pod
metadata: {name: pod-level}
spec:
  securityContext: {runAsUser: 1337}
  containers: [{name: app, image: app}]
---
apiVersion: v1
kind: Pod
metadata: {name: proxy-only, namespace: shop}
spec:
  containers:
  - {name: app, image: app, securityContext: {runAsUser: 1000}}
  - {name: istio-proxy, image: proxyv2, securityContext: {runAsUser: 1337}}
---
apiVersion: v1
kind: Pod
metadata: {name: gateway, namespace: istio-system, labels: {istio: ingressgateway}}
spec:
  securityContext: {runAsUser: 1337}
  containers: [{name: istio-proxy, image: proxyv2}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: both-levels, namespace: shop}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      securityContext: {runAsUser: 1337}
      containers: [{name: app, image: app, securityContext: {runAsUser: 1337}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: fine, namespace: shop}
spec:
  selector: {matchLabels: {app: y}}
  template:
    metadata: {labels: {app: y}}
    spec:
      containers: [{name: app, image: app, securityContext: {runAsUser: 1001}}]
"""


def test_application_uid_1337_is_reported_once_per_pod_or_deployment(tmp_path):
    msgs = run(tmp_path, UID_INPUT, "IST0144")
    # The proxy's own container and Istio's own components may run as 1337; a pod or deployment that sets it
    # twice is still one finding.
    assert found(msgs) == Counter({"Pod pod-level": 1, "Deployment shop/both-levels": 1})
    assert all(m.level == "warning" and m.message == "User ID (UID) 1337 is reserved for the sidecar proxy."
               and m.hint for m in msgs)
