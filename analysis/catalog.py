"""The one catalog of check codes: istioctl analyze's IST messages and meshstep's own MST codes.

IST entries (code, name, level, template) are Istio's own, read from Istio's `msg/messages.yaml` at development
time into `istio_messages.py` (`python -m analysis.catalog --istio-messages PATH > \
analysis/istio_messages.py`; a test compares the table with the file). A check names only its code; its
name and level come from here, and its text is Istio's template filled in (`IstioEntry.text`).

MST entries are what istioctl analyze has no code for. Each is a check's identity: code, name, level, the stages
(feature ids) whose gate it belongs to, what the finding means, why it matters before that stage, and the hint. A
hint is a template: a check fills in the resource names (`{namespace}`, `{workload}`, …); the registered default
and docs/checks.md show them as `<namespace>`. docs/checks.md is generated from this file (`python -m
analysis.catalog > docs/checks.md`).

Numbering groups MST codes by stage: 00xx install, 01xx injection, 02xx routing, 03xx PERMISSIVE, 04xx STRICT,
05xx authorization, 06xx egress, 07xx the other features, 08xx what a change keeps working (the callers config
shows, 0801-0802; the invariants checked on the cluster with a rendering applied, 0810-0814; what telemetry shows,
0820-0824, analysis/traffic.py), 09xx revisions and upgrades; 0001-0005 are raised by the plan, the
features and analyze themselves (the install gate, dependencies, skipped checks), not by a registered check."""
from __future__ import annotations

import argparse
import json
import re
import string
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.istio_messages import MESSAGES

# Stages that hold a policy in the caller's sidecar: calls from a pod without one ignore it.
CALLER_SIDE = ("request-routing", "traffic-shifting", "timeouts-retries", "circuit-breaking", "fault-injection")
# Stages whose policy the server's sidecar enforces: a pod without one is not protected by it.
SERVER_SIDE = ("authorization-policy", "request-authentication", "local-rate-limit")
# Stages whose gate asks the telemetry who really calls.
TRAFFIC_GATED = ("mtls-strict", "authorization-policy", "egress-registry-only", "sidecar-scope")


def reads_traffic(features: Iterable[str]) -> bool:
    """Whether a gate of one of these features reads traffic (else no telemetry need be asked)."""
    return bool(set(features) & set(TRAFFIC_GATED))


# Go's fmt verbs in Istio's templates, as Istio's analyzers fill them in.
_VERB = re.compile(r"%([svdq%])")


@dataclass(frozen=True)
class IstioEntry:
    """One of istioctl analyze's messages: its code, name, level and Go fmt template."""

    code: str
    name: str
    level: str  # error | warning | info
    template: str

    def text(self, *args: Any) -> Filled:
        """The template filled in as Go's fmt does: %s and %v as text, %d a number, %q a quoted string (the quotes
        are the template's, what they hold the value's); each argument stays a value of the Filled text."""
        values, parts, at = iter(args), [], 0
        for m in _VERB.finditer(self.template):
            parts.append((self.template[at:m.start()], False))
            at = m.end()
            verb = m.group(1)
            if verb == "%":
                parts.append(("%", False))
                continue
            value = next(values)
            if verb == "q":
                parts += [('"', False), (json.dumps(str(value), ensure_ascii=False)[1:-1], True), ('"', False)]
            elif isinstance(value, (list, tuple)):  # Go prints a slice as [a b]
                parts += [("[", False), *_joined(value, " "), ("]", False)]
            else:
                parts.append((str(value), True))
        if next(values, None) is not None:
            raise TypeError(f"{self.code}: more arguments than its template takes")
        return Filled([*parts, (self.template[at:], False)])


def _joined(values: Iterable[Any], sep: str) -> list[tuple[str, bool]]:
    """Each of `values` a value of its own (a Filled one keeps its parts), `sep` between them the template's."""
    out: list[tuple[str, bool]] = []
    for i, v in enumerate(values):
        out += [(sep, False)] * bool(i) + (list(v.parts) if isinstance(v, Filled) else [(str(v), True)])
    return out


def joined(values: Iterable[Any], sep: str = ", ") -> Filled:
    """`values` listed, each a value of its own (or its own parts): a list a message quotes (names of pods,
    namespaces, hosts)."""
    return Filled(_joined(values, sep))


class Filled(str):
    """A message or hint as its template filled it: the text, and `parts`, each (text, whether a value filled it
    in). What a cluster says is only ever a value: a surface shows each value as data (cut, escaped: app/safe.py)
    and the template's own text as it is, so that a payload cannot become structure, and a long value is cut
    alone, never the message after it."""

    parts: tuple[tuple[str, bool], ...]

    def __new__(cls, parts: Iterable[tuple[str, bool]]) -> Filled:
        parts = tuple((t, v) for t, v in parts if t)
        self = super().__new__(cls, "".join(t for t, _ in parts))
        self.parts = parts
        return self

    def to_json(self) -> list[list[Any]]:
        return [[t, v] for t, v in self.parts]

    @classmethod
    def of(cls, text: str, parts: Iterable[Iterable[Any]] | None) -> str:
        """`text` as stored with its parts (to_json), a Filled again when they still make it; else `text` as is."""
        filled = cls((str(t), bool(v)) for t, v in parts or ())
        return filled if parts and filled == text else text


def fill(template: str, **values: Any) -> Filled:
    """A template in str.format's syntax (`{name}`, no conversions) filled with `values`, each kept a value; a value
    that is itself Filled keeps its own parts (a message quoted in another)."""
    parts: list[tuple[str, bool]] = []
    for literal, name, spec, _ in string.Formatter().parse(template):
        parts.append((literal, False))
        if name is not None:
            value = values[name]
            parts += value.parts if isinstance(value, Filled) else [(format(value, spec or ""), True)]
    return Filled(parts)


ISTIO: dict[str, IstioEntry] = {code: IstioEntry(code, name, level, template)
                                for code, name, level, template in MESSAGES}


@dataclass(frozen=True)
class Entry:
    code: str
    name: str
    level: str
    gates: tuple[str, ...]
    summary: str  # what the finding means, one line
    why: str  # why it matters before the stages it gates
    hint: str  # what to do; {fields} are filled in by the check
    raised_by: str = ""  # for a code no registered check raises: which gate does

    @property
    def stages(self) -> str:
        return ", ".join(self.gates) or self.raised_by or "meshstep analyze"

    def fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.hint) if f]

    def hint_for(self, **values: str) -> Filled:
        """The hint with this finding's resource names filled in (each a value of the Filled text)."""
        return fill(self.hint, **values)

    @property
    def generic_hint(self) -> str:
        """The hint with `<field>` where a check fills in names (the registered default and the docs)."""
        return self.hint.format(**{f: f"<{f}>" for f in self.fields()})


_ENTRIES = (
    # ---------------------------------------------------------------- install (the plan's first stage)
    Entry("MST0001", "IstioNotInstalled", "error", (),
          "The cluster has neither Istio's CRDs nor an istiod.",
          "Every later stage configures Istio: without it nothing meshstep renders is acted on.",
          "Install Istio (istioctl install --set profile=default) and re-read the cluster.",
          "the install stage (planner/plan.py)"),
    Entry("MST0002", "IstiodNotReady", "error", (),
          "An istiod revision has pods, none of them ready.",
          "istiod injects sidecars, pushes config and signs certificates: a stage applied now does nothing, and "
          "new pods in injected namespaces fail to start.",
          "Find out why with kubectl -n {namespace} describe pods -l app=istiod, and fix it before any stage.",
          "the install stage (planner/plan.py)"),
    Entry("MST0003", "DependencyNotOn", "error", (),
          "A stage turns on a feature whose prerequisite is not on in its scope (nor mesh-wide).",
          "Features build on each other (STRICT mTLS needs sidecars, traffic shifting needs routing): without the "
          "prerequisite the new config has nothing to act on, or breaks traffic.",
          "Turn on {dependency} in {scope} first (meshstep render {dependency} --scope {scope}).",
          "every stage, for each feature's depends_on (features/base.py)"),

    Entry("MST0006", "DependencyUnknown", "warning", (),
          "Whether a stage's prerequisite is in effect in its scope is unknown: the source could not show the kinds "
          "that decide it (refused with a 403, or not in the snapshot).",
          "The gate neither passes nor refuses on what it cannot see: the stage renders, and whether its "
          "prerequisite holds is for you to check before applying it.",
          "Check that {dependency} is in effect in {scope} ({check}), or read the cluster with access to those "
          "kinds (a live source, or a snapshot that includes them).",
          "every stage, for each feature's depends_on (features/base.py)"),
    Entry("MST0007", "KindServedUnknown", "warning", (),
          "A stage renders a kind the source cannot tell whether the cluster serves: its CRD is not readable, or "
          "not in the snapshot.",
          "meshstep does not take what it cannot see for absent: the objects are rendered and validated against "
          "the schema it knows, and `kubectl apply` fails on a cluster that lacks the CRD.",
          "Check that the cluster serves it: {check}; if not, install the CRDs first (or choose another API, e.g. "
          "--set api=istio).",
          "every rendering, for the kinds it writes (features/_gate.py)"),
    Entry("MST0008", "FieldsOwnedElsewhere", "warning", (),
          "A stage changes (or leaves out) fields of a live object that another field manager owns, as the "
          "object's managedFields say: Argo CD, Flagger, kubectl, Kiali …, by server-side apply or by update.",
          "meshstep applies as field manager meshstep and never forces: server-side apply refuses to change a field "
          "another manager owns (409, MST1001 at the dry run), and leaves a field it owns where it is; forced, or "
          "applied by a GitOps export, the change would be undone at that manager's next sync.",
          "Leave {fields} to {manager}: change them where {manager} keeps them (the Git repository Argo CD syncs, "
          "the Flagger canary, the manifest kubectl applies), or take them over in that tool (have it stop "
          "managing them), then check the gate again.",
          "every stage, for the live objects it changes (features/base.py)"),
    Entry("MST0004", "KindForbidden", "warning", (),
          "The source refused to list a kind (403 Forbidden): the checks that read it were skipped.",
          "A check that cannot see a kind's objects would report what it cannot see as missing (a subset that "
          "selects no pod, a selector that matches nothing): meshstep skips it and says so instead.",
          "Grant the identity meshstep reads with list on {resource} (kubectl auth can-i list {resource} -A), "
          "or analyze a snapshot that includes them.",
          "meshstep analyze, for the checks it skips (analysis/base.py)"),
    Entry("MST0005", "KindNotInstalled", "info", (),
          "The cluster does not have an API installed (Istio's or the Gateway API's CRDs): the checks that read "
          "its kinds were skipped.",
          "Nothing can be wrong with objects the cluster cannot hold; the checks run once the API is installed.",
          "Nothing to do unless you use {api}: kubectl get crds | grep {group} lists its CRDs; install them, then "
          "analyze again.",
          "meshstep analyze, for the checks it skips (analysis/base.py)"),

    # ---------------------------------------------------------------- sidecar injection
    Entry("MST0101", "WorkloadRestartsToJoinMesh", "info", ("sidecar-injection",),
          "A workload's pods have no sidecar yet: they get one only when they are re-created.",
          "Labelling a namespace changes nothing for running pods; each workload must be restarted, which is a "
          "rollout the team should schedule.",
          "After labelling the namespace, restart it: {restart}."),
    Entry("MST0102", "HostNetworkPod", "warning", ("sidecar-injection",),
          "A pod uses the node's network (hostNetwork: true): the injector skips it and no sidecar can capture its "
          "traffic.",
          "It stays outside the mesh after injection: it sends and receives plaintext, and will be refused once "
          "its peers are STRICT.",
          "Keep {workload} out of the mesh knowingly (its callers and servers must accept plaintext), or drop "
          "hostNetwork from its pod template if it does not need the node's network."),
    Entry("MST0103", "InitContainerNeedsNetwork", "warning", ("sidecar-injection",),
          "An init container calls the network, and the injected pod would capture its traffic before any proxy "
          "runs.",
          "With the classic sidecar (istio-proxy among containers), istio-init or istio-cni redirect all traffic "
          "to port 15001 before the app's init containers run, when Envoy is not up yet: their calls fail and the "
          "pod never starts.",
          "Use native sidecars (Kubernetes 1.29+, ENABLE_NATIVE_SIDECARS=true on istiod) so istio-proxy starts "
          "before {container}; or exclude its destinations with the pod annotation "
          "traffic.sidecar.istio.io/excludeOutboundPorts (or excludeOutboundIPRanges); or run {container} as "
          "uid 1337 (runAsUser: 1337), whose traffic is never captured."),
    Entry("MST0104", "PortProtocolNotDeclared", "warning",
          ("sidecar-injection", "request-routing", "traffic-shifting"),
          "A Service port's protocol cannot be told from its name or appProtocol: Istio must sniff it.",
          "Sniffing adds a delay to each new connection, fails for protocols where the server speaks first, and a "
          "port that is not known to be HTTP gets no HTTP routing, retries or request metrics.",
          "Name port {port} of Service {service} for its protocol (http-…, grpc-…, tcp-…; e.g. `kubectl -n "
          "{namespace} edit service {name}`) or set its appProtocol."),
    Entry("MST0105", "ServerFirstProtocolPort", "warning", ("sidecar-injection", "mtls-permissive"),
          "A Service port on a server-first protocol's port (MySQL, MongoDB, SMTP, …) does not declare its protocol.",
          "The server speaks first, so protocol sniffing waits for client bytes that never come; and under "
          "PERMISSIVE mTLS plaintext clients of a server-first port fail.",
          "Declare port {port} of Service {service} as TCP: name it tcp-{protocol} (or appProtocol: tcp)."),
    Entry("MST0106", "NoIstiodForRevision", "error", ("sidecar-injection",),
          "The istiod revision the stage injects with is not running (or no istiod runs at all).",
          "That revision's injector does not answer: pods created in the namespace get no sidecar, or are "
          "rejected if the webhook fails closed.",
          "Install or repair {istiod} ({install}; kubectl -n {root} get pods -l app=istiod shows its "
          "pods), or give the stage a revision that runs (revision=<running revision>)."),
    Entry("MST0107", "PodOptedOutOfInjection", "info", ("sidecar-injection",),
          "A pod says sidecar.istio.io/inject: \"false\": it stays out of the mesh when its namespace is injected.",
          "It keeps talking plaintext, and will be refused once its servers are STRICT: the team should know it is "
          "out on purpose.",
          "Nothing to do if {workload} stays out on purpose; to bring it in, remove sidecar.istio.io/inject from "
          "its pod template and restart it."),

    # ---------------------------------------------------------------- routing
    Entry("MST0201", "ServiceWithoutVersionLabels", "warning", ("request-routing", "traffic-shifting"),
          "Pods behind a Service have no `version` label.",
          "DestinationRule subsets select pods by labels, `version` by convention: without it a subset cannot "
          "tell one version's pods from another's, and Istio's metrics report the version as unknown.",
          "Add a version label to the pod template of {workloads} (e.g. version: v1) and restart them."),
    Entry("MST0202", "CallerWithoutSidecar", "warning", CALLER_SIDE,
          "Pods in scope have no sidecar: calls they make skip the caller-side policy.",
          "Routing, traffic shifting, timeouts, retries, circuit breaking and fault injection are applied by the "
          "calling pod's sidecar: a caller without one goes straight to the service's pods.",
          "Inject {workload} ({inject}), or accept that its calls are not routed."),

    # ---------------------------------------------------------------- mTLS PERMISSIVE
    Entry("MST0301", "PlaintextWorkload", "info", ("mtls-permissive",),
          "A workload has no sidecar: it keeps sending and receiving plaintext.",
          "PERMISSIVE accepts plaintext, so nothing breaks; but these are the workloads that must be injected "
          "before STRICT.",
          "Inject {workload} before the STRICT stage: {inject}."),

    # ---------------------------------------------------------------- mTLS STRICT
    Entry("MST0401", "PodWithoutSidecarCallsStrict", "error", ("mtls-strict",),
          "A pod without a sidecar in the scope of a STRICT stage calls a server that is, or will be after the stage, "
          "STRICT: its config (command, args, env) names the server's Service, as service.namespace or, in the pod's "
          "own namespace, by its short name as a URL's host or host:port.",
          "STRICT is enforced by the server's proxy: a caller without a sidecar cannot present a certificate, so its "
          "plaintext is refused there (connection reset). A server without a proxy enforces nothing, and a workload "
          "PeerAuthentication that keeps a server PERMISSIVE wins over its namespace's STRICT, as its portLevelMtls "
          "does for the pods' port a call reaches (the port written, else its URL scheme's default): none is "
          "counted; a pods' port its portLevelMtls makes STRICT refuses plaintext whatever the workload's mode. "
          "The pod's own inbound calls keep working: callers' auto mTLS sends plaintext to a pod without a proxy.",
          "Inject {workload} ({inject}). A PeerAuthentication for it does nothing: it has no proxy to apply one; if it "
          "must stay out, keep the servers it calls ({targets}) accepting its plaintext: PERMISSIVE through a "
          "PeerAuthentication whose selector picks them, or portLevelMtls for the port it calls."),
    Entry("MST0402", "PlaintextCallerOutsideMesh", "error", ("mtls-strict",),
          "Something outside the mesh calls a service in the scope: a workload of a namespace without sidecars, a "
          "Kubernetes Ingress' controller, or a Service/Endpoints of another namespace pointing here.",
          "Under STRICT these callers' plaintext is refused: the calls fail with connection resets. Each call is "
          "judged as Istio judges it, by its server's own PeerAuthentication before its namespace's and by "
          "portLevelMtls for the pods' port it reaches (the port a workload names, an Ingress backend's, the pods' "
          "own an Endpoints gives; an ExternalName alias says none): one its server accepts is not counted (a server "
          "without a sidecar accepts any), one whose port is unknown is where a port of the server goes against its "
          "mode.",
          "Bring {caller} into the mesh ({inject}) before STRICT, or keep the port it calls PERMISSIVE with a "
          "PeerAuthentication portLevelMtls for {target}."),
    Entry("MST0403", "DestinationRuleDisablesTLS", "error", ("mtls-strict",),
          "A DestinationRule sets TLS mode DISABLE for a host in the scope.",
          "Callers that use it send plaintext, which STRICT servers refuse.",
          "Remove trafficPolicy.tls (or set mode: ISTIO_MUTUAL) in DestinationRule {rule}: "
          "kubectl -n {namespace} edit destinationrule {name}."),
    Entry("MST0404", "HealthProbesNotRewritten", "error", ("mtls-strict",),
          "Pods keep their httpGet health probes as they are (sidecar.istio.io/rewriteAppHTTPProbers: \"false\").",
          "The kubelet probes without a certificate: under STRICT its plaintext probes are refused, the pods turn "
          "unready and are restarted.",
          "Remove sidecar.istio.io/rewriteAppHTTPProbers: \"false\" from the pod template of {workload} so the "
          "injector redirects its probes through the sidecar (port 15020), then restart it."),
    Entry("MST0405", "PermissiveNotInPlace", "warning", ("mtls-strict",),
          "A PeerAuthentication sets the scope's mTLS mode to DISABLE: it is neither PERMISSIVE nor STRICT (with no "
          "PeerAuthentication at all, Istio is PERMISSIVE already).",
          "The safe path to STRICT is PERMISSIVE, then checking that traffic is mutual TLS "
          "(istio_requests_total{connection_security_policy=\"mutual_tls\"}), then STRICT.",
          "Do the PERMISSIVE stage first: set mode PERMISSIVE in {policy} (or a PeerAuthentication of its own in "
          "{namespace}), and watch the traffic before going STRICT."),
    Entry("MST0406", "PodWithoutSidecarCallsUnseen", "warning", ("mtls-strict",),
          "A pod without a sidecar in the scope of a STRICT stage: no evidence shows it calling a server that is or "
          "will be STRICT, and none shows it does not (its config names none; telemetry, if read, saw plaintext "
          "from callers outside the mesh that it may be one of).",
          "STRICT in its namespace leaves the pod itself as it is (no proxy enforces anything for it: it keeps "
          "receiving plaintext), and refuses only its own calls to STRICT servers. A call to a name built at run "
          "time or read from a file is in no evidence meshstep has, and Istio's telemetry cannot name the caller: "
          "a pod without a sidecar sends no metadata, so its calls are counted with source_workload=\"unknown\".",
          "Find out what {workload} calls before the stage: Istio's metrics show where pods without a sidecar "
          "call in plaintext (istio_requests_total, and istio_tcp_connections_opened_total for TCP, with reporter "
          "destination, source_workload unknown and connection_security_policy none, summed by "
          "destination_workload_namespace and destination_workload over a week; give the gate them with "
          "--prometheus URL or --telemetry FILE), or read its code and config. Injecting it ({inject}) settles it."),
    Entry("MST0407", "PodWithoutSidecarCallsNoStrictServer", "info", ("mtls-strict",),
          "A pod without a sidecar in the scope of a STRICT stage: in the telemetry's window no plaintext from "
          "callers outside the mesh reached a server that is or will be STRICT, and its config names none.",
          "STRICT leaves its calls working as far as the evidence reaches (a call rarer than the window is not in "
          "it). STRICT does not cover the pod itself: with no proxy, it accepts plaintext from anyone.",
          "Nothing here blocks the stage; inject {workload} ({inject}) when it belongs in the mesh, so that STRICT "
          "covers what it serves too."),

    # ---------------------------------------------------------------- authorization
    Entry("MST0501", "StrictMtlsNotInPlace", "error", ("authorization-policy",),
          "The workloads in scope still accept plaintext (mTLS is not STRICT there).",
          "Policies that allow callers by principal or namespace only mean something when the peer proved its "
          "identity with mTLS: a plaintext caller has no principal.",
          "Do the mTLS STRICT stage for {namespace} first: a PeerAuthentication with mode STRICT ({fix})."),
    Entry("MST0502", "SharedServiceAccount", "warning", ("authorization-policy",),
          "Several workloads run as the same service account, so they share one identity.",
          "A policy that allows a principal (cluster.local/ns/<namespace>/sa/<account>) allows every workload "
          "that runs as it: the policy cannot tell them apart.",
          "Give each of {workloads} its own ServiceAccount (kubectl -n {namespace} create serviceaccount <name>; "
          "set serviceAccountName in its pod template) before writing policies by principal."),
    Entry("MST0503", "DefaultServiceAccount", "warning", ("authorization-policy",),
          "A workload runs as its namespace's `default` service account.",
          "Every workload without an account of its own is `default`: a policy that allows it allows all of them.",
          "Create a ServiceAccount for {workload} (kubectl -n {namespace} create serviceaccount {name}) and set "
          "serviceAccountName: {name} in its pod template."),
    Entry("MST0504", "PolicyNotEnforcedWithoutSidecar", "warning", SERVER_SIDE,
          "Pods in scope have no sidecar: the server-side policy is not enforced for them.",
          "Authorization, request authentication and local rate limits are enforced by the serving pod's sidecar: "
          "a pod without one accepts every request.",
          "Inject {workload} ({inject}) before relying on the policy."),

    # ---------------------------------------------------------------- egress
    Entry("MST0601", "ExternalHostWithoutServiceEntry", "warning", ("egress-service-entry", "egress-registry-only"),
          "A workload is configured to call an external host that no ServiceEntry registers.",
          "Calls to unregistered hosts are opaque PassthroughCluster traffic today, and are refused once "
          "outboundTrafficPolicy is REGISTRY_ONLY.",
          "Register {host} with a ServiceEntry (hosts: [{host}], location: MESH_EXTERNAL, resolution: DNS, its "
          "ports) in {namespace} or the root namespace."),
    Entry("MST0602", "RegistryOnlyAlreadySet", "info", ("egress-registry-only",),
          "The mesh config already sets outboundTrafficPolicy REGISTRY_ONLY.",
          "The stage would change nothing mesh-wide; unregistered hosts are already refused.",
          "Nothing to apply: check that calls to external hosts go through ServiceEntries (istioctl proxy-config "
          "cluster <pod> | grep BlackHole)."),

    # ---------------------------------------------------------------- other features
    Entry("MST0701", "NoTracingProvider", "warning", ("tracing",),
          "The mesh config names no tracing provider.",
          "A Telemetry resource that turns tracing on needs an extensionProviders entry to send spans to; "
          "without one the proxies trace nothing.",
          "Add a tracing provider to the mesh config's extensionProviders ({provider}) and reference it from the "
          "Telemetry resource."),
    Entry("MST0702", "NoIngressGateway", "warning", ("ingress-gateway",),
          "No ingress gateway deployment was found.",
          "An Istio Gateway resource configures gateway pods that select it: without any, it routes nothing.",
          "Deploy one (helm install istio-ingressgateway istio/gateway -n {namespace}), or use a Kubernetes "
          "Gateway with gatewayClassName: istio, for which istiod deploys one."),
    Entry("MST0703", "AmbientComponentMissing", "error", ("ambient-mode", "waypoint"),
          "A component ambient mode needs (ztunnel, istio-cni) is not running.",
          "istio-cni redirects ambient pods' traffic and ztunnel carries it: without both, labelling a namespace "
          "ambient does nothing, or cuts its pods off.",
          "Install it: istioctl install --set profile=ambient (or helm install {component} istio/{component} "
          "-n {namespace})."),
    Entry("MST0708", "AmbientProfileNotApplied", "error", ("ambient-mode", "waypoint"),
          "The control plane runs without the ambient profile: istio-cni with AMBIENT_ENABLED \"false\", or istiod "
          "without PILOT_ENABLE_AMBIENT.",
          "ztunnel may run, but istio-cni hands it no pod and istiod does not program it: a namespace labelled "
          "ambient gets no mTLS and no L4 policy. Ambient is not installed until both carry the profile.",
          "Upgrade the install to the ambient profile (istioctl upgrade --set profile=ambient, or helm upgrade "
          "istiod and istio-cni in {namespace} with --set profile=ambient), then move namespaces."),
    Entry("MST0709", "IstioTooOldForAmbient", "error", ("gateway-api-crds", "ambient-install"),
          "The installed Istio is older than ambient mode's GA release.",
          "istio.io's migration to ambient relies on ztunnel, waypoints and targetRefs-bound policies as GA "
          "releases have them.",
          "Upgrade Istio to {version} or later first (meshstep plan new --template upgrade)."),
    Entry("MST0710", "KubernetesUnsupportedByInstalledRelease", "warning", ("gateway-api-crds", "ambient-install"),
          "A node runs a Kubernetes version the installed Istio release does not support, or whether it does is "
          "unknown (the release is not in meshstep's copy of istio.io's supported releases table, or nodes report "
          "no kubelet version, or none is in the source).",
          "Both of istio.io's ambient paths ask for a Kubernetes version the Istio release supports: the supported "
          "releases page lists them per release (the migration guide's 1.31 to 1.35 is the latest release's). "
          "Outside them ztunnel, istio-cni and waypoints run on APIs the release was not tested with.",
          "Upgrade the nodes to a Kubernetes version Istio {istio} supports ({supported}: {source}), or Istio to a "
          "release that supports the nodes' Kubernetes, before moving namespaces to ambient."),
    Entry("MST0730", "CiliumRemovesIstioCni", "error", ("ambient-install",),
          "Cilium runs as the cluster's CNI with cni-exclusive on (its default): it deletes other CNI plugins' "
          "config, istio-cni's among them.",
          "istio.io's ambient platform prerequisites: Cilium must be configured with cni.exclusive=false so that "
          "istio-cni can chain after it; otherwise ambient pods are not handed to ztunnel.",
          "Set cni.exclusive=false in Cilium's Helm values (cni-exclusive: \"false\" in ConfigMap {configmap}) and "
          "restart the Cilium agents, then install ambient."),
    Entry("MST0731", "CiliumChainingUnchecked", "warning", ("ambient-install",),
          "Cilium runs as the cluster's CNI and meshstep could not read whether it removes other CNI plugins' "
          "config (cni-exclusive).",
          "Cilium deletes other CNI plugins' config unless cni.exclusive=false (its default is true), and then "
          "istio-cni cannot hand ambient pods to ztunnel. meshstep reads only Istio's ConfigMaps.",
          "Check: kubectl -n {namespace} get configmap cilium-config -o jsonpath='{{.data.cni-exclusive}}' must "
          "print false; where default-deny NetworkPolicies exist, also allow kubelet probes from 169.254.7.127/32 "
          "(a CiliumClusterwideNetworkPolicy), as istio.io's platform prerequisites say."),
    Entry("MST0720", "EnvoyFilterIgnoredByWaypoint", "error", ("ambient-policies", "ambient-mode"),
          "An EnvoyFilter patches the namespace's sidecars, and waypoints and ztunnel ignore EnvoyFilters.",
          "istio.io's migration guide: EnvoyFilters are silently ignored after the migration; one with no "
          "ambient equivalent is a migration blocker.",
          "Replace {filter} with a WasmPlugin bound to the waypoint (targetRefs), or delete it if it is no longer "
          "needed, before moving {namespace} to ambient."),
    Entry("MST0721", "SidecarResourceLapses", "error", ("ambient-policies", "ambient-mode"),
          "A Sidecar resource limits the namespace's sidecars (egress hosts, outbound policy, listeners).",
          "Ambient has no Sidecar resource: the limits it sets (which hosts the workloads reach, how) stop "
          "applying when the sidecars go.",
          "Express the limit another way first (REGISTRY_ONLY with ServiceEntries, an egress waypoint, "
          "AuthorizationPolicy at the destinations), then delete the Sidecar and move {namespace}."),
    Entry("MST0723", "SidecarsStillRunning", "error", ("ambient-cleanup",),
          "Pods of an ambient namespace still have their sidecars: they have not restarted since the switch.",
          "A pod keeps its sidecar until it restarts, and its sidecar still enforces the selector-bound policies "
          "and reads the DestinationRule subsets and Sidecar resources that the clean-up deletes.",
          "Restart them (kubectl rollout restart deployment -n {namespace}) and check that none has a sidecar "
          "before cleaning up {namespace}."),
    Entry("MST0722", "RouteNotExpressibleAsHTTPRoute", "error", ("ambient-policies", "ambient-mode"),
          "A VirtualService uses routing an HTTPRoute of the Gateway API's standard channel cannot say.",
          "Waypoints serve HTTPRoutes (VirtualService support is Alpha there): retries, fault injection, CORS, "
          "redirects and delegation have no standard-channel HTTPRoute field, and would be dropped.",
          "Drop or rewrite those parts of the VirtualService in {namespace} (or keep the namespace on sidecars) "
          "before migrating its policies."),
    Entry("MST0706", "WaypointMissingForL7", "error", ("ambient-mode",),
          "L7 config in the namespace needs a waypoint in ambient mode, and no waypoint serves it.",
          "In ambient mode ztunnel carries the traffic at L4: VirtualService routes, DestinationRule subsets and "
          "L7 AuthorizationPolicy rules apply only at a waypoint. Moved to ambient without one, routing by version "
          "silently stops and an L7 policy bound to the workloads denies everything it selects.",
          "Migrate {namespace}'s VirtualServices to HTTPRoutes and bind its L7 policies to a waypoint with "
          "targetRefs (meshstep render ambient-policies --scope {namespace}, where it has any), activate the "
          "waypoint (meshstep render waypoint --scope {namespace}), then move {namespace} to ambient."),
    Entry("MST0707", "L7PolicyEnforcedByZtunnel", "error", (),
          "An AuthorizationPolicy with L7 rules is enforced by ztunnel, which cannot evaluate them.",
          "ztunnel evaluates only L4 attributes (identities, namespaces, IPs, ports): a policy bound to ambient "
          "workloads (by selector, or namespace-wide) that uses methods, paths, headers or request principals "
          "fails safe as a DENY for everything it selects.",
          "Deploy a waypoint for {namespace} (meshstep render waypoint --scope {namespace}) and bind {policy} to "
          "it with targetRefs (kind Gateway, group gateway.networking.k8s.io), or keep only L4 attributes."),
    Entry("MST0704", "SidecarScopeCutsCalls", "warning", ("sidecar-scope",),
          "A workload calls a service of a namespace that the Sidecar's egress hosts would not include.",
          "A Sidecar resource limits the services its proxies know: a call to a host outside its egress hosts "
          "goes to the PassthroughCluster or is refused under REGISTRY_ONLY, and loses routing and mTLS.",
          "Add {host} to the egress hosts of the Sidecar for {namespace} (e.g. \"{target}/*\")."),
    Entry("MST0705", "NoMetricsBackend", "info", ("metrics",),
          "No Prometheus was found to scrape the proxies' metrics.",
          "Proxies export metrics on port 15020 regardless; without a scraper nobody sees them.",
          "Install Prometheus (kubectl apply -f samples/addons/prometheus.yaml from the Istio release) or point "
          "your own at the proxies' prometheus.io annotations."),

    # ---------------------------------------------------------------- what a change keeps working
    Entry("MST0801", "CallersNotVisible", "warning", ("mtls-strict", "authorization-policy"),
          "Namespaces outside the scope run pods without sidecars: meshstep knows only the calls their config "
          "names (URLs, host:port in command, args and env; Ingresses).",
          "A pod without a sidecar that calls into the scope by a name built at run time is not in the evidence: "
          "STRICT or an authorization policy refuses it and no check here said so.",
          "Before the stage, find out who calls the scope from {namespaces}: give the gate Istio's metrics "
          "(--prometheus URL or --telemetry FILE), or read the servers' access logs; inject those callers or allow "
          "them explicitly."),
    Entry("MST0802", "ExternalCallsNotVisible", "warning", ("egress-registry-only",),
          "Meshed workloads name no external host in their config: meshstep cannot tell whether they call one.",
          "Under REGISTRY_ONLY a call to an unregistered host fails (502, BlackHoleCluster); hosts read from a "
          "database or built at run time are not in any evidence meshstep has.",
          "Look at today's PassthroughCluster traffic (istio_requests_total whose destination_service_name is "
          "PassthroughCluster, or the proxies' access logs) and register each host it shows with a "
          "ServiceEntry before the stage."),
    Entry("MST0810", "WorkingConfigLost", "error", (),
          "A rendering drops a host, a gateway binding, a route destination or a traffic-policy field that the "
          "cluster has today, and that the feature is not there to change.",
          "What worked before the change stops working after it: a site behind a gateway, a route, a timeout or a "
          "connection limit the team set.",
          "Report it as a meshstep bug ({feature} should merge into {object}); until then, edit the rendered "
          "YAML so that it keeps {lost}.",
          "the invariants checked after every rendering (features/invariants.py)"),
    Entry("MST0811", "HttpRouteToNonHttpPort", "error", (),
          "A rendering sends an HTTP route or an ingress host to a Service port that is not declared HTTP, HTTP2 or "
          "gRPC.",
          "HTTP routing to a database or opaque TCP port breaks its protocol; Istio treats undeclared ports as TCP "
          "or sniffs them.",
          "Name the port for its protocol (http-…, grpc-…) or set appProtocol if it really serves HTTP; otherwise "
          "choose another service ({service}).",
          "the invariants checked after every rendering (features/invariants.py)"),
    Entry("MST0812", "CallerNewlyRefused", "error", (),
          "With the rendering applied, a call that meshstep has evidence of is refused: by STRICT mTLS, an "
          "AuthorizationPolicy (a RequestAuthentication's DENY among them), REGISTRY_ONLY or a Sidecar's egress.",
          "A caller that works today would fail once the stage is applied.",
          "{fix}",
          "the invariants checked after every rendering (features/invariants.py)"),
    Entry("MST0813", "NewAnalysisError", "error", (),
          "With the rendering applied, analysis reports an error that the cluster does not have today.",
          "Istio would accept the config and then misroute or refuse traffic: the error is the rendering's.",
          "Read the finding ({finding}) and change the parameters or the cluster before this stage.",
          "the invariants checked after every rendering (features/invariants.py)"),
    Entry("MST0814", "RollbackNotExact", "error", (),
          "The rendering's rollback, applied to the cluster with the rendering applied, does not give back the "
          "objects the cluster has today.",
          "A stage must be reversible: a rollback that leaves a field behind or removes one the team set is a "
          "second, unplanned change.",
          "Report it as a meshstep bug; keep a copy of {object} (kubectl get -o yaml) before applying the stage.",
          "the invariants checked after every rendering (features/invariants.py)"),
    Entry("MST0815", "ReachesIngressTraffic", "error", ("fault-injection", "timeouts-retries"),
          "A fault or a timeout would apply to a route that an ingress gateway applies too: the requests of real "
          "users, not only the mesh's calls the feature is aimed at.",
          "A VirtualService bound to an ingress Gateway and to the mesh, or an HTTPRoute attached to a Gateway, "
          "serves the internet's requests: a delay or a tighter timeout there is an outage for them.",
          "Pass --set ingress=true if {gateway}'s traffic is meant to get it; else keep the mesh's routes in a "
          "VirtualService (or an HTTPRoute attached to the Service) of their own.",
          "the invariants checked after every rendering (features/invariants.py)"),
    # ---------------------------------------------------------------- observed traffic (Istio's telemetry)
    Entry("MST0816", "EnforcementLapses", "error", (),
          "The change would alter how a request is decided or routed: a policy no proxy enforces any more (or "
          "ztunnel denying what it cannot evaluate, or judging a waypoint's identity where it judged the client's), "
          "L7 routes nobody applies; once its pods restart, or in the seconds before they do.",
          "Moving from sidecars to ambient changes who enforces: the sidecar, then ztunnel (L4) and the waypoint "
          "(L7, targetRefs); behind a waypoint the destination's ztunnel sees the waypoint's identity, not the "
          "client's. A request allowed or denied before must be decided the same way after every stage, and while "
          "its pods restart.",
          "Migrate {scope}'s policies and routes to its waypoint and activate it before {feature} "
          "(meshstep render ambient-policies --scope {scope}; meshstep render waypoint --scope {scope}); a "
          "mesh-wide policy that checks the client's identity cannot move to one waypoint: rewrite it per "
          "namespace first.",
          "the invariants checked after every rendering (features/invariants.py)"),
    Entry("MST0820", "NoTrafficEvidence", "warning", TRAFFIC_GATED,
          "No telemetry was read: the gate checked config only, not the callers traffic shows.",
          "Config says what should happen; only the proxies' metrics show who really calls (a batch job, a caller "
          "outside the mesh, an external API). istio.io's mTLS migration says to check them before STRICT.",
          "Give the gate Istio's metrics: --prometheus URL (or MESHSTEP_PROMETHEUS_URL), or --telemetry FILE."),
    Entry("MST0821", "PlaintextTrafficObserved", "error", ("mtls-strict",),
          "Plaintext requests into a workload of the scope were observed in the window.",
          "STRICT refuses plaintext: these callers' requests fail with connection resets the moment it applies.",
          "Bring {caller} into the mesh (or keep {destination}'s port PERMISSIVE with a PeerAuthentication "
          "portLevelMtls), and check again until no plaintext is observed: sum by (source_workload) "
          "(increase(istio_requests_total{{reporter=\"destination\", destination_workload_namespace=\"{namespace}\", "
          "connection_security_policy!=\"mutual_tls\"}}[{window}]))."),
    Entry("MST0822", "ObservedCallerRefused", "error", ("authorization-policy",),
          "A caller observed in the window would be refused by the authorization policies the stage renders.",
          "Deny-by-default cuts every caller the allow rules do not name: the ones traffic shows are real.",
          "Allow {caller} (allow_namespaces={namespaces}), or confirm that its calls to {destination} must stop."),
    Entry("MST0823", "UnregisteredHostObserved", "error", ("egress-registry-only",),
          "Traffic to an external host that no ServiceEntry registers was observed in the window.",
          "Under REGISTRY_ONLY calls to unregistered hosts go to the BlackHoleCluster: they fail.",
          "Register {host} with a ServiceEntry (hosts: [{host}], location: MESH_EXTERNAL, resolution: DNS, its "
          "ports) in {namespace} or the root namespace (meshstep render egress-service-entry)."),
    Entry("MST0824", "DestinationOutsideSidecarScope", "error", ("sidecar-scope",),
          "A workload of the scope was observed calling a host that the Sidecar's egress hosts leave out.",
          "Its proxy would no longer know the host: calls go to the PassthroughCluster (losing routing and mTLS) "
          "or fail under REGISTRY_ONLY.",
          "Add {host} to the Sidecar's egress hosts (hosts={target}/*)."),
    # ---------------------------------------------------------------- operating a stage (cluster/apply.py, operate)
    Entry("MST1001", "ApplyConflict", "error", (),
          "The API server refused the stage's server-side apply: a field it changes is owned by another field "
          "manager (Argo CD, Flagger, kubectl, Kiali …), and meshstep never forces.",
          "Forcing would take the field from its owner, which would put its own value back at its next sync: the "
          "two would fight over production config.",
          "Change the field where its owner keeps it (the Git repository Argo CD syncs, the Flagger canary), or "
          "have that manager give it up, then check the gate again.",
          "meshstep plan advance --apply (cluster/apply.py)"),
    Entry("MST1002", "ChangedSinceGate", "error", (),
          "An object the stage changes or deletes was changed (or deleted) in the cluster after the stage's gate "
          "read it (its resourceVersion moved: the precondition of its apply or delete failed).",
          "The gate judged, and the YAML was rendered on, an object that is no longer the cluster's: applying it "
          "would undo that change unseen.",
          "Nothing to fix by hand: the stage goes back to its gate, which runs again on the cluster as it is now.",
          "meshstep plan advance --apply (cluster/apply.py)"),
    Entry("MST1003", "ApplyForbidden", "error", (),
          "The API server's authorization (RBAC) refused a write of the stage (403).",
          "meshstep applies with the kubeconfig's identity: without the verb on the resource, the stage cannot be "
          "applied directly.",
          "Bind a Role or ClusterRole giving that identity get and patch (delete, for a stage that deletes; for "
          "rollbacks, update, create and delete) on the resource, or apply the stage's YAML through GitOps.",
          "meshstep plan advance --apply (cluster/apply.py)"),
    Entry("MST1004", "AdmissionDenied", "error", (),
          "An admission webhook (Istio's validating webhook among them) denied an object of the stage.",
          "The webhook's verdict is the cluster's own: the object as rendered would not be stored.",
          "Read the webhook's message; fix the stage's parameters (or the cluster it names), then check the gate "
          "again.",
          "meshstep plan advance --apply (cluster/apply.py)"),
    Entry("MST1005", "ApplyInvalid", "error", (),
          "The API server found an object of the stage invalid (strict field validation, a schema, a bad request).",
          "An object the server does not accept cannot be applied: the dry run says so before anything changes.",
          "Report it as a meshstep bug with the server's message; until then apply the stage's YAML by hand after "
          "fixing it.",
          "meshstep plan advance --apply (cluster/apply.py)"),
    Entry("MST1006", "BakeRegressed", "error", (),
          "Traffic regressed while the applied stage baked: meshstep rolled it back by itself and stopped the plan.",
          "A threshold crossed on live traffic after the apply is the stage's doing until shown otherwise.",
          "Read the before/after figures, find the cause, then resume the plan (meshstep plan resume --reason "
          "\"…\", MST1008) and check the gate again (meshstep plan advance).",
          "meshstep plan advance --apply (planner/operate.py)"),
    Entry("MST1007", "NotAccepted", "error", (),
          "Istio did not accept an object of the stage: its status reports a validation error, or it was not "
          "reconciled in time; meshstep rolled the stage back by itself and stopped the plan.",
          "Config istiod rejects is never pushed to the proxies: the stage would be applied in name only.",
          "Read the status message (kubectl get {object} -o yaml), fix the parameters, then resume the plan "
          "(meshstep plan resume --reason \"…\", MST1008) and check the gate again.",
          "meshstep plan advance --apply (planner/operate.py)"),
    Entry("MST1008", "PlanStopped", "error", (),
          "The plan is stopped: a stage meshstep applied was rolled back by itself (a bake's regression, config "
          "Istio did not accept), and meshstep applies none of its stages until someone resumes it.",
          "Walking on would apply the next stages on top of a cause nobody has looked at yet: the stop keeps the "
          "plan where it was safe.",
          "Read the stop's reason (meshstep plan show), find and fix the cause, then `meshstep plan resume --reason "
          "\"…\"` (audited, who and why) and run the plan again.",
          "meshstep plan advance/run --apply (planner/moves.py)"),
    Entry("MST1009", "ProxiesNotSynced", "error", (),
          "The proxies the stage touches (sidecars and gateways of its namespaces, every proxy for a mesh-wide "
          "stage) did not acknowledge its config in time, as istiod's /debug/syncz reports them.",
          "A proxy that was not sent the config, or rejected it (an Envoy NACK), does not do what the stage says: a "
          "bake of its traffic would judge config that is not in effect.",
          "Run `istioctl proxy-status` to see what each proxy was sent and acknowledged (a NACK names Envoy's "
          "reason), fix the cause, then check the gate again; MESHSTEP_PROXY_SYNC_TIMEOUT gives slow pushes longer.",
          "meshstep plan advance --apply / --gitops (planner/operate.py)"),
    Entry("MST1010", "GitOpsNotSynced", "error", (),
          "GitOps (Argo CD, Flux) did not bring the stage's objects (or its rollback) to the cluster as rendered "
          "within MESHSTEP_GITOPS_TIMEOUT; nothing was recorded as applied.",
          "meshstep bakes only config it sees on the cluster: recording a stage applied that is not would judge the "
          "traffic of the cluster as it was.",
          "Commit the export's file for the stage (meshstep plan export) to the repository GitOps syncs, check that "
          "the application synced without error, then run the command again.",
          "meshstep plan advance --gitops (planner/operate.py)"),
    Entry("MST1011", "GitOpsRegressed", "error", (),
          "A stage GitOps applied regressed in its bake (or Istio or the proxies did not accept it); meshstep stopped "
          "the plan and left the stage applied.",
          "meshstep cannot undo what GitOps applied: Argo CD or Flux would sync the stage back. The rollback must "
          "go through the repository.",
          "Commit the stage's rollback file from the export (or git revert the stage's commit); then `meshstep plan "
          "rollback --gitops --reason …` waits until the rollback is on the cluster and records it.",
          "meshstep plan advance --gitops (planner/moves.py)"),
)

_UPGRADE_ENTRIES = (
    # ---------------------------------------------------------------- revisions and upgrades (cluster/revisions.py)
    Entry("MST0901", "GatewayOnOldRevision", "warning", (),
          "Two istiod revisions run, and a gateway or ztunnel is still connected to an older one.",
          "Gateways and ztunnel carry every namespace's traffic: left on the old revision, they keep its version "
          "and its config, and removing that revision cuts them off from config and certificates.",
          "Move it with the upgrade's gateway stage (meshstep render gateway-revision --scope mesh), then "
          "`kubectl rollout restart {kind}/{workload} -n {namespace}`."),
    Entry("MST0902", "DefaultTagOnOldRevision", "warning", (),
          "Namespaces already inject from the new revision while the `default` tag still points at the old one.",
          "Namespaces labelled istio-injection=enabled (and new ones) follow the default tag: they stay on the old "
          "release, and the old revision cannot be removed while the tag names it.",
          "Once the moved namespaces are verified: istioctl tag set default --revision {revision} --overwrite, "
          "then restart the namespaces that follow the tag."),
    Entry("MST0903", "ProxyVersionSkew", "warning", (),
          "A proxy's version is outside the skew Istio supports with the istiod it is connected to.",
          "Istio supports a control plane one minor version ahead of its data plane, never behind it "
          "(istio.io supported releases): outside that, config the proxy cannot read is pushed to it.",
          "Restart {workload} in {namespace} so that it is injected at the version of its istiod "
          "(kubectl rollout restart {kind}/{workload} -n {namespace})."),
    Entry("MST0904", "RevisionUnused", "info", (),
          "An istiod revision has no namespace injecting from it and no proxy connected to it.",
          "It is ready to remove: an unused revision still validates and injects what names it, and is one more "
          "release to patch.",
          "Remove it: meshstep render single-revision --scope mesh --set revision={revision}."),
    Entry("MST0905", "ProxyRevisionMissing", "error", (),
          "A proxy is connected to an istiod revision that is not in the cluster.",
          "Its revision was removed (or never installed): the proxy gets no new config and its certificate is "
          "not renewed, so it fails once the certificate expires.",
          "Restart {workload} in {namespace} onto an installed revision (kubectl rollout restart "
          "{kind}/{workload} -n {namespace})."),
    Entry("MST0906", "UpgradeTargetNotReady", "error", ("revision-label", "gateway-revision", "default-tag"),
          "The revision an upgrade stage moves to has no ready istiod.",
          "Pods restarted onto a revision without a ready istiod are not injected, or start without config.",
          "Wait for it: kubectl rollout status deployment/istiod-{revision} -n {namespace}."),
    Entry("MST0907", "RevisionStillInUse", "error", ("single-revision",),
          "The revision to remove still has namespaces, tags or proxies using it, or objects naming its control "
          "plane: a workload's CA_ADDR, discovery address or mesh config volume, a webhook, a tag's Service.",
          "Removing it leaves those proxies without config and certificates, pods of those namespaces without "
          "injection, and what calls its istiod without an answer.",
          "Move what still uses {revision} first: {uses}."),
    Entry("MST0908", "ControlPlaneNotMoved", "warning", (),
          "A proxy workload is labelled for one istiod revision while its CA_ADDR, discovery address or mesh "
          "config names another.",
          "Its proxies run the new release on the old control plane: they are missing from `istioctl "
          "proxy-status --revision` of the revision they are labelled for, and lose config and certificates when "
          "the old revision is removed.",
          "Move every reference with the label (meshstep render gateway-revision --scope mesh --set "
          "revision={revision}), then `kubectl rollout restart {kind}/{workload} -n {namespace}`."),
    Entry("MST0909", "KubernetesUnsupportedByRelease", "error", ("revision-install",),
          "The nodes run a Kubernetes version the Istio release to install does not support.",
          "istio.io's supported releases page lists the Kubernetes versions each Istio release supports: outside "
          "them the new istiod, its webhooks and its proxies run on APIs the release was not tested with.",
          "Install an Istio release that supports Kubernetes {kubernetes} ({source}), or upgrade the nodes to "
          "Kubernetes {low} to {high} first."),
    Entry("MST0910", "KubernetesSupportUnknown", "warning", ("revision-install",),
          "Whether the Istio release to install supports the cluster's Kubernetes is unknown: the release is not "
          "in meshstep's copy of istio.io's supported releases table, or nodes report no kubelet version (or none "
          "is in the source).",
          "The install gate cannot say the release supports the nodes' Kubernetes; it does not pass that silently.",
          "Look the release up on {source} and compare it with `kubectl get nodes` (VERSION column) before "
          "installing."),
)

_ENTRIES += _UPGRADE_ENTRIES
CATALOG: dict[str, Entry] = {e.code: e for e in _ENTRIES}


def markdown() -> str:
    """docs/checks.md: one section per code, with the anchor Message.url links to."""
    intro = ("meshstep's own checks: findings that gate an adoption stage, or that `meshstep analyze` reports (the "
             "upgrade's, 09xx), and that `istioctl analyze` has no code for. Findings that istioctl has are reported "
             "with its IST code and documented on [istio.io](https://istio.io/latest/docs/reference/config/analysis/).")
    generated = ("Generated from `analysis/catalog.py` by `python -m analysis.catalog > "
                 "docs/checks.md`: edit the catalog, not this page.")
    lines = ["# meshstep checks", "", intro, "", generated, "", "| code | name | level | gates |",
             "| --- | --- | --- | --- |"]
    for e in _ENTRIES:
        lines.append(f"| [{e.code}](#{e.code.lower()}) | {e.name} | {e.level} | {e.stages} |")
    for e in _ENTRIES:
        lines += ["", f'<a id="{e.code.lower()}"></a>', f"## {e.code} {e.name}", "",
                  f"**Level:** {e.level}. **Gates:** {e.stages}.", "",
                  f"**What it means.** {e.summary}", "", f"**Why it matters at this stage.** {e.why}", "",
                  f"**What to do.** {e.generic_hint}"]
    return "\n".join(lines) + "\n"


def text(code: str, *args: Any) -> Filled:
    """Istio's message for an IST code, its template filled in with `args`."""
    return ISTIO[code].text(*args)


def identity(code: str) -> tuple[str, str]:
    """(name, level) of a code of either family; KeyError for a code the catalog does not hold."""
    e = ISTIO.get(code) or CATALOG.get(code)
    if e is None:
        raise KeyError(f"{code} is in neither Istio's messages (istio_messages.py) nor meshstep's catalog")
    return e.name, e.level


def istio_table(messages_yaml: Path) -> str:
    """istio_messages.py: the (code, name, level, template) of every message in Istio's messages.yaml."""
    import yaml

    rows = [(m["code"], m["name"], m["level"].lower(), m["template"])
            for m in yaml.safe_load(messages_yaml.read_text(encoding="utf-8"))["messages"]]
    lines = ['"""istioctl analyze\'s messages: (code, name, level, Go fmt template), in code order.',
             "",
             "Generated from Istio's pkg/config/analysis/msg/messages.yaml by `python -m analysis.catalog "
             "--istio-messages",
             'PATH > analysis/istio_messages.py`: regenerate it, do not edit it."""',
             "", "MESSAGES = ("]
    for code, name, level, template in sorted(rows):
        pieces = "\n     ".join(json.dumps(piece, ensure_ascii=False) for piece in _wrapped(template, 100))
        lines.append(f"    ({code!r}, {name!r}, {level!r},\n     {pieces}),")
    return "\n".join(lines + [")", ""])


def _wrapped(text: str, width: int) -> list[str]:
    """Text cut after spaces into pieces of at most about `width` characters (joined, they are the text)."""
    pieces = [""]
    for word in re.findall(r"\S*\s*", text):
        if pieces[-1] and len(pieces[-1]) + len(word) > width:
            pieces.append("")
        pieces[-1] += word
    return [p for p in pieces if p] or [""]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Print docs/checks.md, or with --istio-messages the IST table.")
    parser.add_argument("--istio-messages", type=Path, help="Istio's messages.yaml: print istio_messages.py")
    args = parser.parse_args()
    sys.stdout.write(istio_table(args.istio_messages) if args.istio_messages else markdown())
