"""A realistic synthetic cluster, for benchmarks: apps in namespaces that are mostly injected (two istiod
revisions mid-upgrade: `1-27` injecting native sidecars under istio-cni, the default 1.26 revision injecting
classic sidecars with istio-init), full pod specs as the API server returns them (status, volumes, the
injected proxy's args, env, ports and probes), Services, an istio-system control plane with its webhooks, mesh
ConfigMaps and CRDs, and Istio config that refers to the real services.

The shapes follow cluster/demo and Istio's injector outputs (../shared/istio-reference/inject); every value is
generated, deterministically from `seed`.

    python -m benchmarks.synthetic --out /tmp/big.json            # one `kubectl get -o json` List
    python -m benchmarks.synthetic --out /tmp/big --pods 2000     # a directory, one file per kind
"""
from __future__ import annotations

import argparse
import json
import random
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import yaml

from cluster.files import YAML_LOADER

CRDS = Path(__file__).resolve().parent.parent / "cluster" / "demo" / "crds.yaml"

NEW_REV, NEW_VERSION = "1-27", "1.27.3"  # native sidecars, istio-cni (istio-validation)
OLD_REV, OLD_VERSION = "default", "1.26.4"  # classic sidecars, istio-init
HUB = "docker.io/istio"
NODES_PER_POD = 1 / 100  # ~100 pods a node
APPS_PER_NAMESPACE = 20
# Namespace injection, cycling: 60% the revision label, 25% istio-injection=enabled, 10% nothing, 5% disabled,
# spread so that a small cluster has each kind too.
_NAMESPACE_MODES = ("rev", "enabled", "rev", "none", "rev", "enabled", "rev", "rev", "enabled", "rev", "disabled",
                    "rev", "enabled", "rev", "rev", "none", "rev", "enabled", "rev", "rev")
# Share of each Istio kind among `istio_objects` (the rest are VirtualServices).
ISTIO_MIX = (("DestinationRule", 0.28), ("AuthorizationPolicy", 0.15), ("ServiceEntry", 0.10),
             ("PeerAuthentication", 0.07), ("Sidecar", 0.04), ("RequestAuthentication", 0.02),
             ("Telemetry", 0.01), ("Gateway", 0.01))
ISTIO_API = {"VirtualService": "networking.istio.io/v1", "DestinationRule": "networking.istio.io/v1",
             "ServiceEntry": "networking.istio.io/v1", "Sidecar": "networking.istio.io/v1",
             "Gateway": "networking.istio.io/v1", "AuthorizationPolicy": "security.istio.io/v1",
             "PeerAuthentication": "security.istio.io/v1", "RequestAuthentication": "security.istio.io/v1",
             "Telemetry": "telemetry.istio.io/v1"}
_ALNUM = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes' generated name suffixes
_WORDS = ("cart", "checkout", "catalog", "search", "orders", "payments", "ledger", "billing", "shipping", "users",
          "auth", "profile", "reviews", "ratings", "inventory", "pricing", "promo", "notify", "email", "media",
          "thumbs", "feed", "ads", "reco", "quotes", "fx", "tax", "audit", "report", "export")
_TEAMS = ("storefront", "fulfilment", "identity", "growth", "finance", "platform", "data", "content")


class _Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.rv = 100_000
        self.clock = 0

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def suffix(self, n: int) -> str:
        return "".join(self.rng.choice(_ALNUM) for _ in range(n))

    def node_port(self) -> int:
        return 30000 + self.rng.randrange(2768)

    def digest(self) -> str:
        return f"{self.rng.getrandbits(256):064x}"

    def time(self, base_day: int = 2) -> str:
        self.clock += self.rng.randint(1, 40)
        s = self.clock
        return f"2026-02-{base_day + s // 86400 % 20:02d}T{s // 3600 % 24:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z"

    def meta(self, name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
        self.rv += self.rng.randint(1, 37)
        m: dict[str, Any] = {"creationTimestamp": self.time(), "name": name}
        if namespace is not None:
            m["namespace"] = namespace
        m.update(extra)
        m["resourceVersion"] = str(self.rv)
        m["uid"] = self.uid()
        return m


# ---------------------------------------------------------------- pod spec pieces


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _resource_env(name: str, resource: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"resourceFieldRef": {"divisor": "0", "resource": resource}}}


def _http_probe(path: str, port: int | str, period: int = 10, failure: int = 3, timeout: int = 1,
                delay: int | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"failureThreshold": failure, "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
                         "periodSeconds": period, "successThreshold": 1, "timeoutSeconds": timeout}
    if delay is not None:
        p["initialDelaySeconds"] = delay
    return p


def _sa_volume(name: str) -> dict[str, Any]:
    return {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
        {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    "path": "namespace"}]}}]}}


def _iptables_args(validation: bool) -> list[str]:
    args = ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "",
            "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"]
    return args + ["--run-validation", "--skip-rule-apply"] if validation else args


def _init_container(version: str, validation: bool, sa_mount: dict[str, Any]) -> dict[str, Any]:
    return {
        "args": _iptables_args(validation), "image": f"{HUB}/proxyv2:{version}", "imagePullPolicy": "IfNotPresent",
        "name": "istio-validation" if validation else "istio-init",
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": ({"drop": ["ALL"]} if validation
                                             else {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}),
                            "privileged": False, "readOnlyRootFilesystem": not validation,
                            "runAsGroup": 1337 if validation else 0, "runAsNonRoot": validation,
                            "runAsUser": 1337 if validation else 0},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
        "volumeMounts": [sa_mount],
    }


_PROXY_MOUNTS = (("/var/run/secrets/workload-spiffe-uds", "workload-socket"),
                 ("/var/run/secrets/credential-uds", "credential-socket"),
                 ("/var/run/secrets/workload-spiffe-credentials", "workload-certs"),
                 ("/var/run/secrets/istio", "istiod-ca-cert"), ("/var/run/secrets/istio/crl", "istio-ca-crl"),
                 ("/var/lib/istio/data", "istio-data"), ("/etc/istio/proxy", "istio-envoy"),
                 ("/var/run/secrets/tokens", "istio-token"), ("/etc/istio/pod", "istio-podinfo"))


def _proxy_container(version: str, revision: str, native: bool, ns: str, workload: str, owner: str,
                     app: dict[str, Any], probers: str | None, sa_mount: dict[str, Any]) -> dict[str, Any]:
    istiod = f"istiod-{revision}" if revision != "default" else "istiod"
    pod_ports = ",\n".join("    " + orjson.dumps({"name": p.get("name"), "containerPort": p["containerPort"],
                                                   "protocol": "TCP"}).decode() for p in app.get("ports", ()))
    env = [
        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
        {"name": "CA_ADDR", "value": f"{istiod}.istio-system.svc:15012"},
        _field_env("POD_NAME", "metadata.name"), _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("INSTANCE_IP", "status.podIP"), _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        _field_env("HOST_IP", "status.hostIP"), _resource_env("ISTIO_CPU_LIMIT", "limits.cpu"),
        {"name": "PROXY_CONFIG", "value": orjson.dumps({"discoveryAddress": f"{istiod}.istio-system.svc:15012",
                                                        "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}}
                                                        }).decode() + "\n"},
        {"name": "ISTIO_META_POD_PORTS", "value": f"[\n{pod_ports}\n]"},
        {"name": "ISTIO_META_APP_CONTAINERS", "value": app["name"]},
        _resource_env("GOMEMLIMIT", "limits.memory"), _resource_env("GOMAXPROCS", "limits.cpu"),
        {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}, _field_env("ISTIO_META_NODE_NAME", "spec.nodeName"),
        {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
        {"name": "ISTIO_META_OWNER", "value": f"kubernetes://apis/apps/v1/namespaces/{ns}/{owner}s/{workload}"},
        {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"}, {"name": "TRUST_DOMAIN", "value": "cluster.local"},
    ]
    if probers:
        env.append({"name": "ISTIO_KUBE_APP_PROBERS", "value": probers})
    c: dict[str, Any] = {
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                 "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
        "env": env, "image": f"{HUB}/proxyv2:{version}", "imagePullPolicy": "IfNotPresent",
        "lifecycle": {"preStop": {"exec": {"command": ["pilot-agent", "request", "--debug-port=15020", "POST",
                                                       "drain"]}}},
        "name": "istio-proxy",
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": _http_probe("/healthz/ready", 15021, period=15, failure=4, timeout=3),
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
    }
    if native:
        c["restartPolicy"] = "Always"
    c["securityContext"] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "privileged": False, "readOnlyRootFilesystem": True, "runAsGroup": 1337,
                            "runAsNonRoot": True, "runAsUser": 1337}
    c["startupProbe"] = _http_probe("/healthz/ready", 15021, period=1, failure=600, timeout=3)
    c["terminationMessagePath"] = "/dev/termination-log"
    c["terminationMessagePolicy"] = "File"
    c["volumeMounts"] = [{"mountPath": p, "name": n} for p, n in _PROXY_MOUNTS] + [sa_mount]
    return c


def _proxy_volumes() -> list[dict[str, Any]]:
    return [
        {"emptyDir": {}, "name": "workload-socket"}, {"emptyDir": {}, "name": "credential-socket"},
        {"emptyDir": {}, "name": "workload-certs"}, {"emptyDir": {"medium": "Memory"}, "name": "istio-envoy"},
        {"emptyDir": {}, "name": "istio-data"},
        {"downwardAPI": {"defaultMode": 420, "items": [
            {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}, "path": "labels"},
            {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"}, "path": "annotations"}]},
         "name": "istio-podinfo"},
        {"name": "istio-token", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
        {"configMap": {"defaultMode": 420, "name": "istio-ca-root-cert"}, "name": "istiod-ca-cert"},
        {"configMap": {"defaultMode": 420, "name": "istio-ca-crl", "optional": True}, "name": "istio-ca-crl"},
    ]


def _status_annotation(revision: str, native: bool, validation: bool) -> str:
    init = "istio-validation" if validation else "istio-init"
    inits, containers = ([init, "istio-proxy"], None) if native else ([init], ["istio-proxy"])
    return orjson.dumps({"initContainers": inits, "containers": containers,
                         "volumes": ["workload-socket", "credential-socket", "workload-certs", "istio-envoy",
                                     "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert", "istio-ca-crl"],
                         "imagePullSecrets": None, "revision": revision}).decode()


def _container_status(g: _Gen, c: dict[str, Any], started: str, terminated: bool = False) -> dict[str, Any]:
    cid = f"containerd://{g.digest()}"
    repo = c["image"].rsplit(":", 1)[0]
    state = ({"terminated": {"containerID": cid, "exitCode": 0, "finishedAt": started, "reason": "Completed",
                             "startedAt": started}} if terminated else {"running": {"startedAt": started}})
    return {"containerID": cid, "image": c["image"], "imageID": f"{repo}@sha256:{g.digest()}", "lastState": {},
            "name": c["name"], "ready": True, "restartCount": 0, "started": not terminated, "state": state}


def _pod_status(g: _Gen, ip: str, host_ip: str, containers: list[dict[str, Any]], inits: list[dict[str, Any]],
                ready: bool = True) -> dict[str, Any]:
    t = g.time()
    conds = [("PodReadyToStartContainers", True), ("Initialized", True), ("Ready", ready),
             ("ContainersReady", ready), ("PodScheduled", True)]
    status: dict[str, Any] = {
        "conditions": [{"lastProbeTime": None, "lastTransitionTime": t, "status": str(ok), "type": k}
                       for k, ok in conds],
        "containerStatuses": [_container_status(g, c, t) for c in containers],
        "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
    }
    if inits:
        status["initContainerStatuses"] = [_container_status(g, c, t, terminated=c.get("restartPolicy") != "Always")
                                           for c in inits]
    status.update({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "qosClass": "Burstable",
                   "startTime": t})
    return status


_TOLERATIONS = [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "tolerationSeconds": 300}]


# ---------------------------------------------------------------- the cluster


class _Cluster:
    def __init__(self, pods: int, services: int, istio_objects: int, seed: int, opt_outs: bool = True):
        self.g = _Gen(seed)
        self.opt_outs = opt_outs
        self.out: list[dict[str, Any]] = []
        self.target_pods, self.target_services, self.target_istio = pods, services, istio_objects
        self.pod_count = 0
        self.nodes = [f"node-{i:03d}" for i in range(max(3, round(pods * NODES_PER_POD)))]
        self.ip = 0
        self.svc_ip = 0
        self.apps: list[dict[str, Any]] = []  # ns, name, labels, ports, sa, injected
        self.namespaces: list[tuple[str, str]] = []  # (name, mode)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.out.append(obj)
        return obj

    def pod_ip(self) -> str:
        self.ip += 1
        return f"10.{244 + self.ip // 65536}.{self.ip // 256 % 256}.{self.ip % 256}"

    def cluster_ip(self) -> str:
        self.svc_ip += 1
        return f"10.96.{self.svc_ip // 250 % 256}.{self.svc_ip % 250 + 2}"

    def node(self) -> tuple[str, str]:
        i = self.g.rng.randrange(len(self.nodes))
        return self.nodes[i], f"10.0.{i // 250}.{i % 250 + 2}"

    # ------------------------------------------------------------ infrastructure

    def infrastructure(self) -> None:
        g = self.g
        for i, name in enumerate(self.nodes):
            host_ip = f"10.0.{i // 250}.{i % 250 + 2}"
            self.add({"apiVersion": "v1", "kind": "Node", "metadata": g.meta(name, labels={
                "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "m6i.4xlarge", "topology.kubernetes.io/zone": f"zone-{i % 3}"}),
                "spec": {"podCIDR": f"10.244.{i}.0/24", "providerID": f"aws:///zone-{i % 3}/i-{g.suffix(17)}"},
                "status": {"addresses": [{"address": host_ip, "type": "InternalIP"},
                                         {"address": name, "type": "Hostname"}],
                           "allocatable": {"cpu": "15890m", "memory": "60Gi", "pods": "110"},
                           "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                           "conditions": [{"lastHeartbeatTime": g.time(), "lastTransitionTime": g.time(1),
                                           "message": "kubelet is posting ready status", "reason": "KubeletReady",
                                           "status": "True", "type": "Ready"}],
                           "nodeInfo": {"architecture": "amd64", "bootID": g.uid(), "machineID": g.digest()[:32],
                                        "systemUUID": g.uid(), "kubeProxyVersion": "v1.31.2",
                                        "containerRuntimeVersion": "containerd://1.7.22",
                                        "kernelVersion": "6.1.112", "kubeletVersion": "v1.31.2",
                                        "operatingSystem": "linux", "osImage": "Bottlerocket OS 1.26.1"}}})
        for name in ("default", "kube-node-lease", "kube-public", "kube-system"):
            self._namespace(name, {})
        self.add({"apiVersion": "v1", "kind": "Service", "metadata": g.meta("kubernetes", "default", labels={
            "component": "apiserver", "provider": "kubernetes"}), "spec": {
            "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            "sessionAffinity": "None", "type": "ClusterIP"}, "status": {"loadBalancer": {}}})
        self.service_count = 1
        # kube-proxy and istio-cni on every node.
        for ds, image, labels in (("kube-proxy", "registry.k8s.io/kube-proxy:v1.31.2", {"k8s-app": "kube-proxy"}),
                                  ("istio-cni-node", f"{HUB}/install-cni:{NEW_VERSION}",
                                   {"k8s-app": "istio-cni-node"})):
            ns = "kube-system" if ds == "kube-proxy" else "istio-system"
            cname = "kube-proxy" if ds == "kube-proxy" else "install-cni"
            container = {"name": cname, "image": image, "imagePullPolicy": "IfNotPresent",
                         "command": ["/usr/local/bin/kube-proxy"] if ds == "kube-proxy" else ["install-cni"],
                         "securityContext": {"privileged": True}}
            self._controller("DaemonSet", ds, ns, labels, {"containers": [container], "hostNetwork": True,
                                                           "serviceAccountName": ds}, len(self.nodes))
            for node_index, node in enumerate(self.nodes):
                self._plain_pod(f"{ds}-{self.g.suffix(5)}", ns, {**labels, "controller-revision-hash": "6d8f7b"},
                                [dict(container)], "DaemonSet", ds,
                                node=(node, f"10.0.{node_index // 250}.{node_index % 250 + 2}"))

    def _namespace(self, name: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> None:
        meta = self.g.meta(name, labels={**labels, "kubernetes.io/metadata.name": name})
        if annotations:
            meta["annotations"] = annotations
        self.add({"apiVersion": "v1", "kind": "Namespace", "metadata": meta,
                  "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})

    def _controller(self, kind: str, name: str, ns: str, labels: dict[str, str], spec: dict[str, Any],
                    replicas: int, template_meta: dict[str, Any] | None = None) -> str:
        """A Deployment (with its ReplicaSet), StatefulSet or DaemonSet; returns the pod-template-hash."""
        g = self.g
        tmpl_meta = template_meta or {"labels": dict(labels)}
        template = {"metadata": {"creationTimestamp": None, **tmpl_meta}, "spec": {
            **spec, "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
            "securityContext": spec.get("securityContext", {}), "terminationGracePeriodSeconds": 30}}
        body: dict[str, Any] = {"selector": {"matchLabels": dict(labels)}, "template": template}
        status: dict[str, Any] = {"observedGeneration": 1}
        if kind == "DaemonSet":
            body["updateStrategy"] = {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}, "type": "RollingUpdate"}
            status.update({"currentNumberScheduled": replicas, "desiredNumberScheduled": replicas,
                           "numberAvailable": replicas, "numberMisscheduled": 0, "numberReady": replicas,
                           "updatedNumberScheduled": replicas})
        else:
            body = {"replicas": replicas, "revisionHistoryLimit": 10, **body}
            status.update({"availableReplicas": replicas, "readyReplicas": replicas, "replicas": replicas,
                           "updatedReplicas": replicas})
            if kind == "Deployment":
                body["progressDeadlineSeconds"] = 600
                body["strategy"] = {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                                    "type": "RollingUpdate"}
            else:
                body["serviceName"] = name
                body["podManagementPolicy"] = "OrderedReady"
        meta = g.meta(name, ns, generation=1, labels=dict(labels),
                      annotations={"deployment.kubernetes.io/revision": "1"} if kind == "Deployment" else None)
        if meta["annotations"] is None:
            del meta["annotations"]
        api = "apps/v1"
        obj = self.add({"apiVersion": api, "kind": kind, "metadata": meta, "spec": body, "status": status})
        if kind != "Deployment":
            return ""
        h = g.suffix(10)
        rs_labels = {**labels, "pod-template-hash": h}
        rs_template = {"metadata": {**template["metadata"], "labels": {**template["metadata"].get("labels", {}),
                                                                        "pod-template-hash": h}},
                       "spec": template["spec"]}
        self.add({"apiVersion": api, "kind": "ReplicaSet", "metadata": g.meta(
            f"{name}-{h}", ns, generation=1, labels=rs_labels,
            annotations={"deployment.kubernetes.io/desired-replicas": str(replicas),
                         "deployment.kubernetes.io/max-replicas": str(replicas + max(1, replicas // 4)),
                         "deployment.kubernetes.io/revision": "1"},
            ownerReferences=[{"apiVersion": api, "blockOwnerDeletion": True, "controller": True,
                              "kind": "Deployment", "name": name, "uid": obj["metadata"]["uid"]}]),
            "spec": {"replicas": replicas, "selector": {"matchLabels": rs_labels}, "template": rs_template},
            "status": {"availableReplicas": replicas, "fullyLabeledReplicas": replicas, "observedGeneration": 1,
                       "readyReplicas": replicas, "replicas": replicas}})
        return h

    def _plain_pod(self, name: str, ns: str, labels: dict[str, str], containers: list[dict[str, Any]],
                   owner_kind: str, owner: str, node: tuple[str, str] | None = None,
                   annotations: dict[str, str] | None = None, spec_extra: dict[str, Any] | None = None) -> None:
        g = self.g
        node_name, host_ip = node or self.node()
        sa_volume = f"kube-api-access-{g.suffix(5)}"
        for c in containers:
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("volumeMounts", []).append({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                                     "name": sa_volume, "readOnly": True})
        meta = g.meta(name, ns, labels=labels, ownerReferences=[{
            "apiVersion": "apps/v1", "blockOwnerDeletion": True, "controller": True, "kind": owner_kind,
            "name": owner, "uid": g.uid()}])
        if annotations:
            meta["annotations"] = annotations
        spec = {"containers": containers, "dnsPolicy": "ClusterFirst", "enableServiceLinks": True,
                "nodeName": node_name, "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
                "restartPolicy": "Always", "schedulerName": "default-scheduler", "securityContext": {},
                "serviceAccount": owner, "serviceAccountName": owner, "terminationGracePeriodSeconds": 30,
                "tolerations": [dict(t) for t in _TOLERATIONS], "volumes": [_sa_volume(sa_volume)],
                **(spec_extra or {})}
        ip = host_ip if spec.get("hostNetwork") else self.pod_ip()
        self.add({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
                  "status": _pod_status(g, ip, host_ip, containers, [])})
        self.pod_count += 1

    # ------------------------------------------------------------ control plane

    def control_plane(self) -> None:
        g = self.g
        self._namespace("istio-system", {"topology.istio.io/network": "network1"})
        for rev, version in ((NEW_REV, NEW_VERSION), (OLD_REV, OLD_VERSION)):
            name = "istiod" if rev == "default" else f"istiod-{rev}"
            cm_name = "istio" if rev == "default" else f"istio-{rev}"
            labels = {"app": "istiod", "istio": "pilot", "istio.io/rev": rev, "release": "istio",
                      "app.kubernetes.io/version": version, "helm.sh/chart": f"istiod-{version}",
                      "operator.istio.io/component": "Pilot"}
            mesh = {"defaultConfig": {"discoveryAddress": f"{name}.istio-system.svc:15012",
                                      "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}}},
                    "defaultProviders": {"metrics": ["prometheus"]}, "enablePrometheusMerge": True,
                    "outboundTrafficPolicy": {"mode": "ALLOW_ANY"}, "rootNamespace": "istio-system",
                    "trustDomain": "cluster.local"}
            self.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": g.meta(cm_name, "istio-system",
                                                                                   labels=labels),
                      "data": {"mesh": yaml.safe_dump(mesh), "meshNetworks": "networks: {}"}})
            self.add({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": g.meta(f"istio-sidecar-injector{'' if rev == 'default' else '-' + rev}",
                                         "istio-system", labels=labels),
                      "data": {"values": orjson.dumps({"global": {"hub": HUB, "tag": version,
                                                                  "proxy": {"image": "proxyv2"}},
                                                       "revision": "" if rev == "default" else rev,
                                                       "pilot": {"cni": {"enabled": rev != "default"}}}).decode(),
                               "config": "defaultTemplates: [sidecar]\npolicy: enabled\nalwaysInjectSelector: []\n"}})
            container = {
                "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info", "--domain",
                         "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
                "env": [{"name": "REVISION", "value": rev}, {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                        _field_env("POD_NAME", "metadata.name"), _field_env("POD_NAMESPACE", "metadata.namespace"),
                        _field_env("SERVICE_ACCOUNT", "spec.serviceAccountName"),
                        {"name": "KUBECONFIG", "value": "/var/run/secrets/remote/config"},
                        {"name": "PILOT_TRACE_SAMPLING", "value": "1"}, {"name": "CLUSTER_ID", "value": "Kubernetes"},
                        _resource_env("GOMEMLIMIT", "limits.memory"), _resource_env("GOMAXPROCS", "limits.cpu")],
                "image": f"{HUB}/pilot:{version}", "imagePullPolicy": "IfNotPresent", "name": "discovery",
                "ports": [{"containerPort": p, "name": n, "protocol": "TCP"} for p, n in (
                    (8080, "http-debug"), (15010, "grpc-xds"), (15012, "tls-xds"), (15017, "https-webhooks"),
                    (15014, "http-monitoring"))],
                "readinessProbe": _http_probe("/ready", 8080, period=3, timeout=5, delay=1),
                "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True, "runAsNonRoot": True},
            }
            labels = {**labels, "sidecar.istio.io/inject": "false"}  # the pods' (the ConfigMaps have theirs)
            annotations = {"prometheus.io/port": "15014", "prometheus.io/scrape": "true"}
            h = self._controller("Deployment", name, "istio-system", {"app": "istiod", "istio.io/rev": rev},
                                 {"containers": [container], "serviceAccountName": name},
                                 2, {"labels": labels, "annotations": annotations})
            for _ in range(2):
                c = orjson.loads(orjson.dumps(container))
                self._plain_pod(f"{name}-{h}-{g.suffix(5)}", "istio-system", {**labels, "pod-template-hash": h},
                                [c], "ReplicaSet", f"{name}-{h}", annotations=dict(annotations))
            self._service(name, "istio-system", {"app": "istiod", "istio.io/rev": rev},
                          [("grpc-xds", 15010, 15010), ("https-dns", 15012, 15012), ("https-webhook", 443, 15017),
                           ("http-monitoring", 15014, 15014)], labels=labels)
            injector = f"istio-sidecar-injector{'' if rev == 'default' else '-' + rev}"
            self.add({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                      "metadata": g.meta(injector, labels={"app": "sidecar-injector", "istio.io/rev": rev,
                                                           **({"istio.io/tag": "default"} if rev == "default"
                                                              else {})}),
                      "webhooks": [self._webhook(name, "namespace.sidecar-injector.istio.io",
                                                 ({"key": "istio-injection", "operator": "In", "values": ["enabled"]}
                                                  if rev == "default" else
                                                  {"key": "istio.io/rev", "operator": "In", "values": [rev]}))]})
            self.add({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                      "metadata": g.meta(f"istio-validator{'' if rev == 'default' else '-' + rev}-istio-system",
                                         labels={"app": "istiod", "istio": "istiod", "istio.io/rev": rev}),
                      "webhooks": [{**self._webhook(name, "rev.validation.istio.io", None, path="/validate"),
                                    "rules": [{"apiGroups": ["security.istio.io", "networking.istio.io",
                                                             "telemetry.istio.io", "extensions.istio.io"],
                                               "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                                               "resources": ["*"], "scope": "*"}]}]})
        self.add({"apiVersion": "v1", "kind": "Secret", "metadata": g.meta("istio-ca-secret", "istio-system"),
                  "type": "istio.io/ca-root", "data": {k: "LS0tLS1CRUdJTi" + g.suffix(40) for k in
                                                       ("ca-cert.pem", "ca-key.pem", "cert-chain.pem", "key.pem",
                                                        "root-cert.pem")}})
        # The ingress gateway (a `proxy router`), on the new revision.
        labels = {"app": "istio-ingressgateway", "istio": "ingressgateway", "istio.io/rev": NEW_REV,
                  "service.istio.io/canonical-name": "istio-ingressgateway",
                  "service.istio.io/canonical-revision": "latest", "sidecar.istio.io/inject": "false"}
        container = {
            "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                     "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
            "env": [{"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
                    {"name": "CA_ADDR", "value": f"istiod-{NEW_REV}.istio-system.svc:15012"},
                    _field_env("NODE_NAME", "spec.nodeName"), _field_env("POD_NAME", "metadata.name"),
                    _field_env("POD_NAMESPACE", "metadata.namespace"), _field_env("INSTANCE_IP", "status.podIP"),
                    {"name": "ISTIO_META_WORKLOAD_NAME", "value": "istio-ingressgateway"},
                    {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"}],
            "image": f"{HUB}/proxyv2:{NEW_VERSION}", "imagePullPolicy": "IfNotPresent", "name": "istio-proxy",
            "ports": [{"containerPort": 15021, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"},
                      {"containerPort": 8443, "protocol": "TCP"},
                      {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
            "readinessProbe": _http_probe("/healthz/ready", 15021, period=2, failure=30, delay=1),
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        }
        gw_annotations = {"istio.io/rev": NEW_REV, "prometheus.io/path": "/stats/prometheus",
                          "prometheus.io/port": "15020", "prometheus.io/scrape": "true"}
        gw_spec = {"containers": [container], "serviceAccountName": "istio-ingressgateway-service-account",
                   "securityContext": {"runAsGroup": 1337, "runAsNonRoot": True, "runAsUser": 1337}}
        h = self._controller("Deployment", "istio-ingressgateway", "istio-system",
                             {"app": "istio-ingressgateway", "istio": "ingressgateway"}, gw_spec, 3,
                             {"labels": labels, "annotations": gw_annotations})
        for _ in range(3):
            self._plain_pod(f"istio-ingressgateway-{h}-{g.suffix(5)}", "istio-system",
                            {**labels, "pod-template-hash": h}, [orjson.loads(orjson.dumps(container))], "ReplicaSet",
                            f"istio-ingressgateway-{h}", annotations=dict(gw_annotations),
                            spec_extra={"securityContext": dict(gw_spec["securityContext"])})
        self._service("istio-ingressgateway", "istio-system", {"app": "istio-ingressgateway",
                                                                "istio": "ingressgateway"},
                      [("status-port", 15021, 15021), ("http2", 80, 8080), ("https", 443, 8443)],
                      type_="LoadBalancer", labels={"app": "istio-ingressgateway", "istio": "ingressgateway"})
        self._tls_secret("wildcard-example-com")
        self.add({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                  "metadata": g.meta("public-gateway", "istio-system"),
                  "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
                      {"hosts": ["*.example.com"], "port": {"name": "https", "number": 443, "protocol": "HTTPS"},
                       "tls": {"credentialName": "wildcard-example-com", "mode": "SIMPLE"}},
                      {"hosts": ["*.example.com"], "port": {"name": "http", "number": 80, "protocol": "HTTP"},
                       "tls": {"httpsRedirect": True}}]}})
        self.istio_count = 1

    def _webhook(self, istiod: str, name: str, expr: dict[str, Any] | None, path: str = "/inject") -> dict[str, Any]:
        w: dict[str, Any] = {
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t" + self.g.suffix(60),
                             "service": {"name": istiod, "namespace": "istio-system", "path": path, "port": 443}},
            "failurePolicy": "Fail", "matchPolicy": "Equivalent", "name": name,
            "objectSelector": {"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn",
                                                     "values": ["false"]}]},
            "reinvocationPolicy": "Never",
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"],
                       "scope": "*"}],
            "sideEffects": "None", "timeoutSeconds": 10}
        if expr:
            w["namespaceSelector"] = {"matchExpressions": [expr]}
        return w

    def _service(self, name: str, ns: str, selector: dict[str, str], ports: list[tuple[str | None, int, Any]],
                 type_: str = "ClusterIP", labels: dict[str, str] | None = None,
                 app_protocol: str | None = None) -> None:
        ip = self.cluster_ip()
        spec_ports = []
        for i, (pname, port, target) in enumerate(ports):
            p: dict[str, Any] = {"port": port, "protocol": "TCP", "targetPort": target}
            if pname:
                p["name"] = pname
            if app_protocol and i == 0:
                p["appProtocol"] = app_protocol
            if type_ == "LoadBalancer":
                p["nodePort"] = self.g.node_port()
            spec_ports.append(p)
        spec = {"clusterIP": ip, "clusterIPs": [ip], "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack", "ports": spec_ports, "selector": selector,
                "sessionAffinity": "None", "type": type_}
        status: dict[str, Any] = {"loadBalancer": {}}
        if type_ == "LoadBalancer":
            spec["externalTrafficPolicy"] = "Cluster"
            status = {"loadBalancer": {"ingress": [{"ip": "203.0.113.24", "ipMode": "VIP"}]}}
        self.add({"apiVersion": "v1", "kind": "Service", "metadata": self.g.meta(name, ns, labels=labels or {
            "app": name, "service": name}), "spec": spec, "status": status})
        self.service_count += 1

    # ------------------------------------------------------------ applications

    def applications(self) -> None:
        g = self.g
        n_apps = max(1, self.target_services - self.service_count)
        n_ns = max(1, -(-n_apps // APPS_PER_NAMESPACE))
        app_pods = self.target_pods - self.pod_count
        if app_pods < n_apps:
            raise ValueError(f"{self.target_pods} pods are too few for {n_apps} services and the control plane "
                             f"({self.pod_count} pods)")
        modes = _NAMESPACE_MODES
        for i in range(n_ns):
            team = _TEAMS[i % len(_TEAMS)]
            name = f"{team}-{_WORDS[i % len(_WORDS)]}-{i:03d}"
            mode = modes[i % len(modes)]
            labels = {"team": team, **{"rev": {"istio.io/rev": NEW_REV}, "enabled": {"istio-injection": "enabled"},
                                       "none": {}, "disabled": {"istio-injection": "disabled"}}[mode]}
            self._namespace(name, labels, {"owner": f"{team}@acme.example"})
            self.namespaces.append((name, mode))
            self.add({"apiVersion": "v1", "kind": "ConfigMap", "metadata": g.meta("istio-ca-root-cert", name, labels={
                "istio.io/config": "true"}), "data": {"root-cert.pem": "-----BEGIN CERTIFICATE-----\n"
                                                                       + g.suffix(64)
                                                                       + "\n-----END CERTIFICATE-----\n"}})
        # Replicas: every app at least one pod, the rest spread unevenly (a few big apps, many small ones).
        replicas = [1] * n_apps
        for _ in range(app_pods - n_apps):
            replicas[min(int(g.rng.paretovariate(1.2)) - 1, n_apps - 1) if g.rng.random() < 0.3
                     else g.rng.randrange(n_apps)] += 1
        for a in range(n_apps):
            ns, mode = self.namespaces[a % n_ns]
            self._app(a, ns, mode, replicas[a])

    def _app(self, a: int, ns: str, mode: str, replicas: int) -> None:
        g = self.g
        name = f"{_WORDS[a % len(_WORDS)]}-{a:05d}"
        kind = "StatefulSet" if a % 10 == 7 else "Deployment"
        opt_out = self.opt_outs and a % 33 == 5  # sidecar.istio.io/inject: "false" in an injected namespace
        injected = mode in ("rev", "enabled") and not opt_out
        native = mode == "rev"
        revision, version = (NEW_REV, NEW_VERSION) if native else (OLD_REV, OLD_VERSION)
        flavour = a % 20
        if flavour < 13:
            port_name, port, app_protocol = "http", 8080, None
        elif flavour < 16:
            port_name, port, app_protocol = "grpc", 9090, None
        elif flavour < 18:
            port_name, port, app_protocol = "tcp-db", 5432, None
        elif flavour == 18:
            port_name, port, app_protocol = "web", 8080, "http"  # protocol from appProtocol
        else:
            port_name, port, app_protocol = None, 8080, None  # unnamed: Istio sniffs it
        labels = {"app": name, "version": "v1"}
        team = ns.split("-", 1)[0]
        image = f"ghcr.io/acme/{team}-{name.rsplit('-', 1)[0]}:{a % 7}.{a % 13}.{a % 5}"
        app_container: dict[str, Any] = {
            "env": [{"name": "PORT", "value": str(port)}, {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "UPSTREAM", "value": f"http://{_WORDS[(a + 1) % len(_WORDS)]}-{(a + 1) % 99999:05d}"},
                    {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4317"}],
            "image": image, "imagePullPolicy": "IfNotPresent", "name": name,
            "ports": [{"containerPort": port, **({"name": port_name} if port_name else {}), "protocol": "TCP"},
                      {"containerPort": 9464, "name": "metrics", "protocol": "TCP"}],
            "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 10001},
        }
        http = port_name in ("http", "web", None)
        if http:
            app_container["livenessProbe"] = _http_probe("/livez", port, delay=10)
            app_container["readinessProbe"] = _http_probe("/readyz", port, period=5, delay=3)
        else:
            app_container["readinessProbe"] = {"failureThreshold": 3, "periodSeconds": 10, "successThreshold": 1,
                                               "tcpSocket": {"port": port}, "timeoutSeconds": 1}
        template_meta: dict[str, Any] = {"labels": {**labels, "sidecar.istio.io/inject": "false"} if opt_out
                                                   else dict(labels)}
        h = self._controller(kind, name, ns, labels, {"containers": [app_container], "serviceAccountName": name},
                             replicas, template_meta)
        self.add({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": g.meta(name, ns, labels={"app": name})})
        self._service(name, ns, {"app": name}, [(port_name, 80 if http else port, port)], app_protocol=app_protocol)
        self.apps.append({"ns": ns, "name": name, "port": 80 if http else port, "http": http, "injected": injected,
                          "kind": kind})
        probers = None
        if injected and http:
            probers = orjson.dumps({
                f"/app-health/{name}/readyz": {"httpGet": {"path": "/readyz", "port": port, "scheme": "HTTP"},
                                               "timeoutSeconds": 1},
                f"/app-health/{name}/livez": {"httpGet": {"path": "/livez", "port": port, "scheme": "HTTP"},
                                              "timeoutSeconds": 1}}).decode()
        for r in range(replicas):
            pod_name = f"{name}-{r}" if kind == "StatefulSet" else f"{name}-{h}-{g.suffix(5)}"
            pod_labels = dict(template_meta["labels"])
            pod_labels.update({"apps.kubernetes.io/pod-index": str(r), "controller-revision-hash": f"{name}-{h or 'x'}",
                               "statefulset.kubernetes.io/pod-name": pod_name} if kind == "StatefulSet"
                              else {"pod-template-hash": h})
            annotations: dict[str, str] = {}
            c = orjson.loads(orjson.dumps(app_container))
            containers, inits = [c], []
            sa_volume = f"kube-api-access-{g.suffix(5)}"
            sa_mount = {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": sa_volume,
                        "readOnly": True}
            volumes: list[dict[str, Any]] = []
            if injected:
                validation = native  # the new revision runs with istio-cni
                pod_labels.update({"security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": name,
                                   "service.istio.io/canonical-revision": "v1"})
                annotations.update({"istio.io/rev": revision, "kubectl.kubernetes.io/default-container": name,
                                    "kubectl.kubernetes.io/default-logs-container": name,
                                    "prometheus.io/path": "/stats/prometheus", "prometheus.io/port": "15020",
                                    "prometheus.io/scrape": "true",
                                    "sidecar.istio.io/status": _status_annotation(revision, native, validation)})
                if http:  # probes rewritten to the agent, which forwards them (ISTIO_KUBE_APP_PROBERS)
                    c["livenessProbe"]["httpGet"].update(path=f"/app-health/{name}/livez", port=15020)
                    c["readinessProbe"]["httpGet"].update(path=f"/app-health/{name}/readyz", port=15020)
                proxy = _proxy_container(version, revision, native, ns, name, kind.lower(), c, probers, sa_mount)
                inits = [_init_container(version, validation, sa_mount)]
                if native:
                    inits.append(proxy)
                else:
                    containers.append(proxy)
                volumes = _proxy_volumes()
            c["terminationMessagePath"] = "/dev/termination-log"
            c["terminationMessagePolicy"] = "File"
            c["volumeMounts"] = [sa_mount]
            node_name, host_ip = self.node()
            owner_kind, owner = ("StatefulSet", name) if kind == "StatefulSet" else ("ReplicaSet", f"{name}-{h}")
            meta = g.meta(pod_name, ns, labels=pod_labels, ownerReferences=[{
                "apiVersion": "apps/v1", "blockOwnerDeletion": True, "controller": True, "kind": owner_kind,
                "name": owner, "uid": g.uid()}])
            if annotations:
                meta = {"annotations": annotations, **meta}
            spec: dict[str, Any] = {"containers": containers, "dnsPolicy": "ClusterFirst", "enableServiceLinks": True}
            if inits:
                spec["initContainers"] = inits
            spec.update({"nodeName": node_name, "preemptionPolicy": "PreemptLowerPriority", "priority": 0,
                         "restartPolicy": "Always", "schedulerName": "default-scheduler", "securityContext": {},
                         "serviceAccount": name, "serviceAccountName": name, "terminationGracePeriodSeconds": 30,
                         "tolerations": [dict(t) for t in _TOLERATIONS],
                         "volumes": volumes + [_sa_volume(sa_volume)]})
            if kind == "StatefulSet":
                spec.update({"hostname": pod_name, "subdomain": name})
            self.add({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
                      "status": _pod_status(g, self.pod_ip(), host_ip, containers, inits)})
            self.pod_count += 1

    # ------------------------------------------------------------ Istio config

    def istio_config(self) -> None:
        remaining = max(0, self.target_istio - self.istio_count)
        counts = {kind: int(share * self.target_istio) for kind, share in ISTIO_MIX}
        counts["Gateway"] = max(0, counts["Gateway"] - 1)  # public-gateway is one
        while sum(counts.values()) > remaining:
            biggest = max(counts, key=lambda k: counts[k])
            counts[biggest] -= 1
        counts["VirtualService"] = remaining - sum(counts.values())
        by_ns: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for app in self.apps:
            by_ns[app["ns"]].append(app)
        meshed_ns = [ns for ns, mode in self.namespaces if mode in ("rev", "enabled")] or [self.namespaces[0][0]]
        http_apps = [a for a in self.apps if a["http"] and a["injected"]] or self.apps
        for kind, n in counts.items():
            for i in range(n):
                obj = getattr(self, f"_{kind.lower()}")(i, http_apps, meshed_ns, by_ns)
                self.add({"apiVersion": ISTIO_API[kind], "kind": kind, **obj})
                self.istio_count += 1

    def _host(self, app: dict[str, Any]) -> str:
        return f"{app['name']}.{app['ns']}.svc.cluster.local"

    def _virtualservice(self, i: int, apps: list[dict[str, Any]], _ns: list[str], _by: Any) -> dict[str, Any]:
        app = apps[i % len(apps)]
        name = app["name"] if i < len(apps) else f"{app['name']}-{i // len(apps)}"
        spec: dict[str, Any] = {"hosts": [app["name"]], "http": [
            {"match": [{"uri": {"prefix": "/api/v2"}}], "route": [{"destination": {"host": app["name"],
                                                                                    "port": {"number": app["port"]}}}],
             "timeout": "5s", "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset"}},
            {"route": [{"destination": {"host": app["name"], "port": {"number": app["port"]}}, "weight": 100}]}]}
        if i % 10 == 0:  # exposed through the ingress gateway
            spec["hosts"] = [f"{app['name']}.example.com"]
            spec["gateways"] = ["istio-system/public-gateway"]
            spec["http"][0]["route"][0]["destination"]["host"] = self._host(app)
            spec["http"][1]["route"][0]["destination"]["host"] = self._host(app)
        return {"metadata": self.g.meta(name, app["ns"]), "spec": spec}

    def _destinationrule(self, i: int, apps: list[dict[str, Any]], _ns: list[str], _by: Any) -> dict[str, Any]:
        app = apps[(i * 7) % len(apps)]
        name = app["name"] if i < len(apps) else f"{app['name']}-{i // len(apps)}"
        spec: dict[str, Any] = {"host": app["name"], "subsets": [{"labels": {"version": "v1"}, "name": "v1"}],
                                "trafficPolicy": {"connectionPool": {"http": {"http2MaxRequests": 1000,
                                                                              "maxRequestsPerConnection": 10},
                                                                     "tcp": {"maxConnections": 100}},
                                                  "outlierDetection": {"baseEjectionTime": "30s",
                                                                       "consecutive5xxErrors": 5,
                                                                       "interval": "10s"}}}
        if i % 4 == 0:
            spec["trafficPolicy"]["tls"] = {"mode": "ISTIO_MUTUAL"}
        return {"metadata": self.g.meta(name, app["ns"]), "spec": spec}

    def _serviceentry(self, i: int, _a: Any, ns: list[str], _by: Any) -> dict[str, Any]:
        host = f"api-{i}.{_WORDS[i % len(_WORDS)]}-partner.example.net"
        return {"metadata": self.g.meta(f"external-{_WORDS[i % len(_WORDS)]}-{i}", ns[i % len(ns)]),
                "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                         "ports": [{"name": "https", "number": 443, "protocol": "TLS"}],
                         "exportTo": ["."]}}

    def _scoped(self, i: int, ns: list[str], by_ns: dict[str, list[dict[str, Any]]]) -> tuple[str, str, Any]:
        """Namespace-wide for the first object of each namespace, then per workload (one per app at most)."""
        namespace = ns[i % len(ns)]
        k = i // len(ns)
        if k == 0:
            return namespace, "default", None
        apps = by_ns.get(namespace) or [{"name": "none"}]
        app = apps[(k - 1) % len(apps)]
        return namespace, app["name"], {"matchLabels": {"app": app["name"]}}

    def _peerauthentication(self, i: int, _a: Any, ns: list[str], by_ns: Any) -> dict[str, Any]:
        namespace, name, selector = self._scoped(i, ns, by_ns)
        spec: dict[str, Any] = {"mtls": {"mode": "STRICT" if i % 3 else "PERMISSIVE"}}
        if selector:
            spec = {"selector": selector, "mtls": {"mode": "STRICT"}, "portLevelMtls": {"9464": {"mode": "DISABLE"}}}
        return {"metadata": self.g.meta(name, namespace), "spec": spec}

    def _sidecar(self, i: int, _a: Any, ns: list[str], by_ns: Any) -> dict[str, Any]:
        namespace, name, selector = self._scoped(i, ns, by_ns)
        spec: dict[str, Any] = {"egress": [{"hosts": ["./*", "istio-system/*"]}],
                                "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY" if i % 2 else "ALLOW_ANY"}}
        if selector:
            spec["workloadSelector"] = {"labels": selector["matchLabels"]}
        return {"metadata": self.g.meta(name, namespace), "spec": spec}

    def _authorizationpolicy(self, i: int, apps: list[dict[str, Any]], _ns: list[str], _by: Any) -> dict[str, Any]:
        app = apps[(i * 3) % len(apps)]
        caller = apps[(i * 3 + 1) % len(apps)]
        return {"metadata": self.g.meta(f"{app['name']}-allow-{i}", app["ns"]), "spec": {
            "selector": {"matchLabels": {"app": app["name"]}}, "action": "ALLOW",
            "rules": [{"from": [{"source": {"principals": [
                f"cluster.local/ns/{caller['ns']}/sa/{caller['name']}",
                "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]}}],
                "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/*"]}}]}]}}

    def _requestauthentication(self, i: int, apps: list[dict[str, Any]], _ns: list[str], _by: Any) -> dict[str, Any]:
        app = apps[(i * 11) % len(apps)]
        return {"metadata": self.g.meta(f"{app['name']}-jwt", app["ns"]), "spec": {
            "selector": {"matchLabels": {"app": app["name"]}},
            "jwtRules": [{"issuer": "https://auth.example.com", "jwksUri": "https://auth.example.com/.well-known/jwks",
                          "forwardOriginalToken": True}]}}

    def _telemetry(self, i: int, _a: Any, ns: list[str], _by: Any) -> dict[str, Any]:
        namespace = "istio-system" if i == 0 else ns[i % len(ns)]
        return {"metadata": self.g.meta("mesh-default" if i == 0 else f"tracing-{i}", namespace),
                "spec": {"tracing": [{"providers": [{"name": "zipkin"}], "randomSamplingPercentage": 1.0}]}}

    def _tls_secret(self, name: str) -> None:
        """The certificate a Gateway names (credentialName), where the gateway's pods read it."""
        self.add({"apiVersion": "v1", "kind": "Secret", "metadata": self.g.meta(name, "istio-system"),
                  "type": "kubernetes.io/tls",
                  "data": {"tls.crt": "LS0tLS1CRUdJTi" + self.g.suffix(60),
                           "tls.key": "LS0tLS1CRUdJTi" + self.g.suffix(60)}})

    def _gateway(self, i: int, _a: Any, ns: list[str], _by: Any) -> dict[str, Any]:
        namespace = ns[i % len(ns)]
        self._tls_secret(f"{namespace}-tls")
        return {"metadata": self.g.meta(f"{namespace}-gateway", namespace), "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"hosts": [f"{namespace}.example.com"],
                         "port": {"name": "https", "number": 443, "protocol": "HTTPS"},
                         "tls": {"credentialName": f"{namespace}-tls", "mode": "SIMPLE"}}]}}


def synthetic_cluster(pods: int = 10_000, services: int = 2_000, istio_objects: int = 1_000,
                      seed: int = 0, managed_fields: bool = False, opt_outs: bool = True) -> list[dict[str, Any]]:
    """Kubernetes objects of a meshed cluster with exactly `pods` Pods, `services` Services and `istio_objects`
    Istio config objects (CRDs not counted), the same for the same arguments; with `managed_fields`, each carrying
    the field-ownership record an API server keeps (`with_managed_fields`). With `opt_outs` false no workload opts
    out of injection (sidecar.istio.io/inject: "false", one app in 33 otherwise). The opted-out workloads name no
    Service of the cluster (UPSTREAM is a short name of the next app, which lives in another namespace; the
    OpenTelemetry collector's namespace is not in the cluster): a STRICT stage warns that it cannot see what they
    call (MST0406) and does not refuse them, so the plans of both can be walked to done."""
    c = _Cluster(pods, services, istio_objects, seed, opt_outs)
    crds = [d for d in yaml.load_all(CRDS.read_text(), Loader=YAML_LOADER) if d]
    c.out.extend(crds)
    c.infrastructure()
    c.control_plane()
    c.applications()
    c.istio_config()
    if managed_fields:
        for o in c.out:
            with_managed_fields(o)
    return c.out


def with_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with metadata.managedFields as a live API server returns them: its configuration owned by the
    client that wrote it (a controller's Update for a pod or a ReplicaSet, Argo CD's Apply for the rest), its status
    by the status writer (https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management)."""
    meta = obj["metadata"]
    owned = {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if meta.get(k)}
    config = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    controlled = obj["kind"] in ("Pod", "ReplicaSet")
    entries = [{"apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": _fields_v1(owned), **_fields_v1(config)},
                "manager": "kube-controller-manager" if controlled else "argocd-controller",
                "operation": "Update" if controlled else "Apply", "time": meta.get("creationTimestamp")}]
    if obj.get("status"):
        entries.append({"apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:status": _fields_v1(obj["status"])},
                        "manager": "kubelet" if obj["kind"] == "Pod" else "kube-controller-manager",
                        "operation": "Update", "subresource": "status", "time": meta.get("creationTimestamp")})
    meta["managedFields"] = entries
    return obj


def _fields_v1(value: dict[str, Any]) -> dict[str, Any]:
    """FieldsV1 of a map: `f:` per field; a list of named items keyed by name (`k:`), any other list atomic."""
    out: dict[str, Any] = {}
    for key, v in value.items():
        if isinstance(v, dict) and v:
            out[f"f:{key}"] = {".": {}, **_fields_v1(v)}
        elif isinstance(v, list) and v and all(isinstance(i, dict) and "name" in i for i in v):
            out[f"f:{key}"] = {".": {}, **{f'k:{{"name":{json.dumps(i["name"])}}}': {".": {}, **_fields_v1(i)}
                                           for i in v}}
        else:
            out[f"f:{key}"] = {}
    return out


def expected_counts(objects: list[dict[str, Any]]) -> dict[str, int]:
    """What an inventory of `objects` must count: pods, pods with a sidecar, services, Istio config objects."""
    pods = [o for o in objects if o["kind"] == "Pod"]
    return {
        "pods": len(pods),
        "pods_in_mesh": sum("sidecar.istio.io/status" in (p["metadata"].get("annotations") or {}) for p in pods),
        "services": sum(o["kind"] == "Service" for o in objects),
        "istio_config": sum(o["apiVersion"].split("/")[0].endswith(".istio.io") for o in objects
                            if o["kind"] != "CustomResourceDefinition"),
    }


def write(objects: list[dict[str, Any]], out: Path) -> None:
    """A `kubectl get -o json` List file (out ends with .json), else a directory with one List per kind."""
    if out.suffix == ".json":
        out.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                                      "items": objects}))
        return
    out.mkdir(parents=True, exist_ok=True)
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in objects:
        by_kind[o["kind"]].append(o)
    for kind, items in sorted(by_kind.items()):
        (out / f"{kind}.json").write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "metadata": {"resourceVersion": ""},
                                                                  "items": items}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="FILE.json (one List) or a directory")
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=2_000)
    parser.add_argument("--istio-objects", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--managed-fields", action="store_true", help="each object with its metadata.managedFields")
    parser.add_argument("--no-opt-outs", dest="opt_outs", action="store_false",
                        help="no workload opts out of injection: every pod ends up with a sidecar")
    args = parser.parse_args(argv)
    objects = synthetic_cluster(args.pods, args.services, args.istio_objects, args.seed, args.managed_fields,
                                args.opt_outs)
    write(objects, args.out)
    counts = expected_counts(objects)
    print(f"wrote {len(objects)} objects to {args.out}: {counts['pods']} pods ({counts['pods_in_mesh']} with a "
          f"sidecar), {counts['services']} services, {counts['istio_config']} Istio config objects; "
          + ("no workload opts out of injection" if not args.opt_outs else
             "some workloads opt out of injection (sidecar.istio.io/inject: \"false\")"))


if __name__ == "__main__":
    main()
