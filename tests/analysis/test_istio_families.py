"""Check families ported from istioctl analyze (application UID, annotations, deprecation, VirtualService match
reachability, Kubernetes Gateway selectors, external control plane, mesh networks), on small inline clusters."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from analysis.common import analyze, with_dummy_ingress
from cluster.inventory import build_inventory
from cluster.sources import files_snapshot


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


# ---------------------------------------------------------------- annotations (IST0107, IST0108, IST0125, IST0135)

ANNOTATED = """
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  annotations: {kubernetes.io/ingress.class: istio, galley.istio.io/analyze-suppress: IST0102}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  annotations: {networking.istio.io/exportTo: ".", networking.istio.io/exportToo: "*", example.com/x: "1"}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations: {sidecar.istio.io/proxyCPU: 100m}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {sidecar.istio.io/proxyCPU: lots}
    spec: {containers: [{name: web, image: web}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  labels: {app: web}
  annotations:
    sidecar.istio.io/proxyCPU: lots
    traffic.sidecar.istio.io/includeOutboundIPRanges: "10.0.0.0/8,10.1.2.3"
    traffic.sidecar.istio.io/excludeInboundPorts: "15020, 8080"
    sidecar.istio.io/interceptionMode: TPROXY
    sidecar.istio.io/inject: "true"
    sidecar.istio.io/status: "{}"
    istio.io/rev: canary
spec: {containers: [{name: web, image: web}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-2
  namespace: shop
  labels: {app: web, sidecar.istio.io/inject: "true"}
  annotations: {sidecar.istio.io/inject: "true", readiness.status.sidecar.istio.io/periodSeconds: "-1"}
spec: {containers: [{name: web, image: web}]}
"""


def test_unknown_annotation_only_in_istios_namespace(tmp_path):
    msgs = run(tmp_path, ANNOTATED, "IST0108")
    assert [(str(m.ref), m.message) for m in msgs] == [
        ("Service shop/web", "Unknown annotation: networking.istio.io/exportToo")]


def test_misplaced_annotation_names_the_kinds_it_belongs_on(tmp_path):
    msgs = run(tmp_path, ANNOTATED, "IST0107")
    assert sorted((str(m.ref), m.message) for m in msgs) == [
        ("Deployment shop/web", "Misplaced annotation: sidecar.istio.io/proxyCPU can only be applied to Pod"),
        ("Namespace shop", "Misplaced annotation: kubernetes.io/ingress.class can only be applied to Ingress")]


def test_invalid_annotation_values_as_the_injector_validates_them(tmp_path):
    msgs = run(tmp_path, ANNOTATED, "IST0125")
    # The Deployment's own (misplaced) annotation is not validated; its pod template is not a Pod the analyzer
    # reads. A CIDR without a prefix length and a negative period are rejected, spaced port lists are not.
    got = sorted((str(m.ref), m.message.split(":", 1)[0]) for m in msgs)
    assert got == [
        ("Pod shop/web-1", "Invalid annotation sidecar.istio.io/proxyCPU"),
        ("Pod shop/web-1", "Invalid annotation traffic.sidecar.istio.io/includeOutboundIPRanges"),
        ("Pod shop/web-2", "Invalid annotation readiness.status.sidecar.istio.io/periodSeconds")]
    assert any("10.1.2.3" in m.message for m in msgs)


def test_deprecated_inject_annotation_is_quiet_when_the_label_is_also_set(tmp_path):
    msgs = run(tmp_path, ANNOTATED, "IST0135")
    assert [(str(m.ref), m.level, m.message) for m in msgs] == [
        ("Pod shop/web-1", "info", ('Annotation "sidecar.istio.io/inject" has been deprecated in favor of the '
                                   '"sidecar.istio.io/inject" label and may not work in future Istio versions.'))]


# ---------------------------------------------------------------- IST0002 Deprecated (fields)

DEPRECATED = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: old-delay, namespace: shop}
spec:
  hosts: [web]
  http:
  - fault: {delay: {percent: 10, fixedDelay: 1s}}
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: new-delay, namespace: shop}
spec:
  hosts: [web]
  http:
  - fault: {delay: {percentage: {value: 10}, fixedDelay: 1s}}
    route: [{destination: {host: web}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: egress, namespace: shop}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: proxy.example.com, port: {number: 3128}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: plain, namespace: other}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""


def test_deprecated_fields_of_virtual_services_and_sidecars(tmp_path):
    msgs = run(tmp_path, DEPRECATED, "IST0002")
    assert sorted((str(m.ref), m.message) for m in msgs) == [
        ("Sidecar shop/egress", "Deprecated: OutboundTrafficPolicy.EgressProxy ignored"),
        ("VirtualService shop/old-delay",
         "Deprecated: HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage")]
    assert all(m.level == "warning" and m.hint for m in msgs)


# ---------------------------------------------------------------- IST0130 / IST0131 unreachable rules and matches

ROUTES = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [api]
  http:
  - name: v1
    match:
    - {name: first, uri: {prefix: /api/v1}}
    route: [{destination: {host: api, subset: v1}}]
  - name: v1-products
    match:
    - uri: {prefix: /api/v1/products}
    - uri: {prefix: /api/v1/products}
      method: {exact: POST}
    route: [{destination: {host: api, subset: v2}}]
  - name: again
    match:
    - {name: renamed, uri: {prefix: /api/v1}}
    route: [{destination: {host: api, subset: v3}}]
  - route: [{destination: {host: api}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ordered, namespace: shop}
spec:
  hosts: [api]
  http:
  - match: [{uri: {prefix: /api/v1/products}}]
    route: [{destination: {host: api, subset: v2}}]
  - match: [{uri: {prefix: /api/v1}}]
    route: [{destination: {host: api, subset: v1}}]
  - match: [{uri: {prefix: /api/v1/products}, headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: api, subset: v3}}]
  tcp:
  - route: [{destination: {host: db}}]
  - route: [{destination: {host: db2}}]
"""


def test_rule_whose_matches_all_come_earlier_is_unreachable(tmp_path):
    msgs = run(tmp_path, ROUTES, "IST0130")
    assert sorted((str(m.ref), m.message) for m in msgs) == [
        ("VirtualService shop/api", 'VirtualService rule "again" not used (all matches used by prior rules).'),
        ("VirtualService shop/ordered", "VirtualService rule #1 not used (only the last rule can have no matches).")]


def test_duplicate_and_prefix_covered_matches_are_ineffective(tmp_path):
    msgs = run(tmp_path, ROUTES, "IST0131")
    # A match's name does not make it a different match; a longer prefix after a shorter one with the same method
    # is covered, one with another method or after it in the list (the `ordered` VirtualService) is not.
    assert sorted((str(m.ref), m.message) for m in msgs) == [
        ("VirtualService shop/api", ('VirtualService rule "again" match "renamed" is not used (duplicate/overlapping '
                                    'match in rule "v1").')),
        ("VirtualService shop/api", ('VirtualService rule "v1-products" match #0 of prefix /api/v1/products is not '
                                    'used (duplicate/overlapping match in rule "first" of prefix /api/v1 on "v1").'))]
    assert all(m.level == "info" for m in msgs)


# ---------------------------------------------------------------- IST0166 / IST0176 Kubernetes Gateway API

K8S_GATEWAY = """
apiVersion: v1
kind: Pod
metadata:
  name: web-gw-istio-1
  namespace: shop
  labels: {gateway.networking.k8s.io/gateway-name: web-gw, app: gw}
spec: {containers: [{name: istio-proxy, image: proxyv2}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-selector, namespace: shop}
spec: {selector: {matchLabels: {app: gw}}, action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-target, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: web-gw}]
  action: DENY
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-namespace, namespace: other}
spec: {selector: {matchLabels: {app: gw}}}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: other-app, namespace: shop}
spec: {selector: {matchLabels: {app: web}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: grpcroutes.gateway.networking.k8s.io
  annotations: {gateway.networking.k8s.io/bundle-version: v1.0.0-rc1}
spec:
  group: gateway.networking.k8s.io
  names: {kind: GRPCRoute, plural: grpcroutes}
  versions: [{name: v1alpha2, served: true, storage: true}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: httproutes.gateway.networking.k8s.io
  annotations: {gateway.networking.k8s.io/bundle-version: v0.1.0}
spec:
  group: gateway.networking.k8s.io
  names: {kind: HTTPRoute, plural: httproutes}
  versions: [{name: v1, served: true, storage: true}]
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: tlsroutes.gateway.networking.k8s.io
  annotations: {gateway.networking.k8s.io/bundle-version: v1.5.0}
spec:
  group: gateway.networking.k8s.io
  names: {kind: TLSRoute, plural: tlsroutes}
  versions: [{name: v1, served: true, storage: true}]
"""


def test_selector_picking_a_kubernetes_gateway_pod_is_ineffective(tmp_path):
    msgs = run(tmp_path, K8S_GATEWAY, "IST0166")
    assert [(str(m.ref), m.message) for m in msgs] == [
        ("AuthorizationPolicy shop/by-selector",
         "Ineffective selector on Kubernetes Gateway web-gw. Use the TargetRef field instead.")]


def test_gateway_api_crd_below_istios_minimum_bundle_version(tmp_path):
    msgs = run(tmp_path, K8S_GATEWAY, "IST0176")
    # httproutes has no minimum; tlsroutes is at it; grpcroutes' pre-release of 1.0.0 is below 1.1.0.
    assert [(str(m.ref), m.message.split(";")[0]) for m in msgs] == [
        ("CustomResourceDefinition grpcroutes.gateway.networking.k8s.io",
         ('Gateway API CRD "grpcroutes.gateway.networking.k8s.io" is at version "1.0.0-rc1" but Istio requires at '
         'least "1.1.0"'))]


# ---------------------------------------------------------------- IST0163 / IST0164 external control plane webhooks

EXTERNAL_ISTIOD = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: istio-validator-external-istiod}
webhooks:
- name: rev.validation.istio.io
  clientConfig: {url: "https://istiod.example.com:15017/validate"}
- name: blank.validation.istio.io
  clientConfig: {caBundle: ""}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: istiod-default-validator}
webhooks:
- name: validation.istio.io
  clientConfig: {service: {name: istiod, namespace: istio-system, path: /validate}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: istio-sidecar-injector-external-istiod}
webhooks:
- name: rev.namespace.sidecar-injector.istio.io
  clientConfig: {url: "https://10.1.2.3:15017/inject"}
- name: rev.object.sidecar-injector.istio.io
  clientConfig: {url: "https://[fd00::1/inject"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: another-injector}
webhooks:
- name: other.example.com
  clientConfig: {}
"""


def test_external_control_plane_webhook_without_usable_url(tmp_path):
    msgs = run(tmp_path, EXTERNAL_ISTIOD, "IST0163")
    assert sorted((str(m.ref), m.message.split(" to reach")[0], m.message.split("cluster ")[1]) for m in msgs) == [
        ("MutatingWebhookConfiguration istio-sidecar-injector-external-istiod",
         "The hostname (https://[fd00::1/inject) that was provided for the webhook "
         "(rev.object.sidecar-injector.istio.io)",
         "was provided in an invalid format. Traffic may not flow properly."),
        ("ValidatingWebhookConfiguration istio-validator-external-istiod",
         "The hostname () that was provided for the webhook (blank.validation.istio.io)",
         "is blank. Traffic may not flow properly.")]


def test_external_control_plane_webhook_at_an_ip_address(tmp_path):
    msgs = run(tmp_path, EXTERNAL_ISTIOD, "IST0164")
    assert [(str(m.ref), m.level) for m in msgs] == [
        ("MutatingWebhookConfiguration istio-sidecar-injector-external-istiod", "info")]
    assert "(https://10.1.2.3:15017/inject)" in msgs[0].message


# ---------------------------------------------------------------- IST0126 MeshNetworks registries

REMOTE_SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: istio-remote-secret-west
  namespace: istio-system
  labels: {istio/multiCluster: "true"}
stringData: {west: "kubeconfig"}
---
apiVersion: v1
kind: Secret
metadata:
  name: remote-south
  namespace: istio-system
  labels: {istio/multiCluster: "true"}
  annotations: {networking.istio.io/cluster: south}
---
apiVersion: v1
kind: Secret
metadata: {name: not-a-remote-secret, namespace: istio-system}
stringData: {east: "kubeconfig"}
"""


def test_mesh_networks_from_a_registry_istiod_does_not_have(tmp_path):
    networks = {"networks": {
        "net1": {"endpoints": [{"fromRegistry": "Kubernetes"}, {"fromCidr": "10.0.0.0/8"}]},
        "net2": {"endpoints": [{"fromRegistry": "west"}, {"fromRegistry": "kubernetes"}, {"fromRegistry": "south"}]},
        "net3": {"endpoints": [{"fromRegistry": "east"}]},
    }}
    msgs = run(tmp_path, REMOTE_SECRET, "IST0126", mesh_networks=networks)
    # Remote secrets name their cluster (istio-remote-secret-<cluster>, or the cluster annotation); cluster IDs are
    # case-sensitive; a Secret without the multi-cluster label adds no cluster.
    assert sorted((str(m.ref), m.level, m.message) for m in msgs) == [
        ("MeshNetworks istio-system/meshnetworks", "error", "Unknown service registry east in network net3"),
        ("MeshNetworks istio-system/meshnetworks", "error", "Unknown service registry kubernetes in network net2")]


def test_no_mesh_networks_no_message(tmp_path):
    assert run(tmp_path, REMOTE_SECRET, "IST0126") == []


# ---------------------------------------------------------------- IST0161 InvalidGatewayCredential


def _pem_cert(days: int) -> str:
    """A self-signed certificate valid from a year ago until `days` from now (negative: already expired)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=365))
            .not_valid_after(now + timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _credential_input(secrets: dict[str, dict[str, str]]) -> str:
    """A Gateway per Secret, each naming it as its credential; the Secrets given as stringData."""
    docs = []
    for name, values in secrets.items():
        data = "\n".join(f"  {k}: |\n" + "\n".join(f"    {line}" for line in v.splitlines()) for k, v in values.items())
        docs.append(f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: istio-system}}\n"
                    f"type: kubernetes.io/tls\nstringData:\n{data}")
        docs.append(f"apiVersion: networking.istio.io/v1\nkind: Gateway\n"
                    f"metadata: {{name: gw-{name}, namespace: shop}}\n"
                    f"spec:\n  selector: {{istio: ingressgateway}}\n  servers:\n"
                    f"  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: ['{name}.example.com']\n"
                    f"    tls: {{mode: SIMPLE, credentialName: {name}}}")
    return "\n---\n".join(docs)


def test_gateway_credentials_that_cannot_serve_are_reported(tmp_path):
    text = _credential_input({
        "good": {"tls.crt": _pem_cert(30), "tls.key": "a key"},
        "generic": {"cert": _pem_cert(30), "key": "a key"},
        "expired": {"tls.crt": _pem_cert(-1), "tls.key": "a key"},
        "not-pem": {"tls.crt": "hush hush", "tls.key": "a key"},
        "no-key": {"tls.crt": _pem_cert(30)},
    })
    found = {m.ref.name: m for m in run(tmp_path, text, "IST0161")}
    assert sorted(found) == ["gw-expired", "gw-no-key", "gw-not-pem"]
    # Istio's text says the credential is invalid; the hint says why, before what to do.
    assert found["gw-expired"].hint.startswith("Secret istio-system/expired: its certificate expired on")
    assert "neither tls.crt and tls.key nor cert and key" in found["gw-no-key"].hint
    assert "its tls.crt is not a PEM certificate" in found["gw-not-pem"].hint
    assert found["gw-expired"].message == ("The credential referenced by the Gateway gw-expired in namespace shop is "
                                           "invalid, which can cause the traffic not to work as expected.")


def test_gateway_credentials_keep_no_secret_values_and_live_secrets_are_not_judged(tmp_path):
    f = tmp_path / "input.yaml"
    f.write_text(_credential_input({"expired": {"tls.crt": _pem_cert(-1), "tls.key": "a key"}}))
    secret = next(o for o in files_snapshot([f]).objects() if o["kind"] == "Secret")
    assert "stringData" not in secret and "data" not in secret and "a key" not in str(secret)
    assert secret["_meshstep_credential"]["keys"] == ["tls.crt", "tls.key"]
    # A Secret as a live cluster gives it to meshstep (metadata only): nothing to judge, nothing reported.
    metadata_only = "\n---\n".join(d for d in _credential_input({"x": {}}).split("\n---\n") if "kind: Secret" not in d)
    assert run(tmp_path, metadata_only + "\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: "
               "istio-system}", "IST0161") == []
