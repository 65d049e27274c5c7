"""Readiness before authorization policies: STRICT mTLS in place, service accounts that tell workloads apart, pods
without a sidecar to enforce the policy."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from analysis.base import Context
from analysis.catalog import fill, joined
from analysis.effective import mtls_mode
from analysis.readiness.scope import Found, Unit, hint, readiness, scope_namespaces, units, without_sidecar
from cluster.model import Ref
from cluster.queries import istio_objects, ns_of

# ---------------------------------------------------------------- before authorization


@readiness("MST0501", "PeerAuthentication")
def strict_not_in_place(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    for n in scope_namespaces(ctx):
        mode = mtls_mode(inv, n)
        fix = f"kubectl -n {n} apply a PeerAuthentication named default with spec.mtls.mode: STRICT"
        if mode.value != "STRICT":
            yield Ref("Namespace", None, n), fill("mTLS is not STRICT in namespace {n} ({why})", n=n, why=mode.why), \
                hint("MST0501", namespace=n, fix=fix)
        for pa in istio_objects(inv, "PeerAuthentication"):
            s = pa.spec
            if ns_of(pa) != n or not s.get("selector"):
                continue
            modes = {(s.get("mtls") or {}).get("mode")} | {(p or {}).get("mode")
                                                          for p in (s.get("portLevelMtls") or {}).values()}
            weak = sorted(m for m in modes & {"PERMISSIVE", "DISABLE"})
            if weak:
                yield pa.ref, (f"keeps {'/'.join(weak)} "
                               "for the workloads it selects"), \
                    hint("MST0501", namespace=n, fix=f"set STRICT in PeerAuthentication {n}/{pa.name}, or delete it")


@readiness("MST0502")
def shared_service_account(ctx: Context) -> Iterator[Found]:
    by_account: dict[tuple[str, str], list[Unit]] = defaultdict(list)
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if u.spec.service_account != "default":  # the default account is MST0503's
            by_account[(u.namespace, u.spec.service_account)].append(u)
    for (n, account), us in sorted(by_account.items()):
        # Versions of one app (reviews-v1, reviews-v2) are one service to a policy: sharing is what they should do.
        apps = {u.spec.labels.get("app") or u.spec.labels.get("app.kubernetes.io/name") or str(u.ref) for u in us}
        if len(apps) > 1:
            names = ", ".join(str(u.ref) for u in us)
            yield Ref("ServiceAccount", n, account), \
                fill("service account {n}/{account} is shared by {names}: one principal for all of them", n=n,
                     account=account, names=joined(str(u.ref) for u in us)), \
                hint("MST0502", workloads=names, namespace=n)


@readiness("MST0503")
def default_service_account(ctx: Context) -> Iterator[Found]:
    for u in units(ctx.inventory, scope_namespaces(ctx)):
        if u.spec.service_account == "default":
            yield u.ref, fill("runs as service account {n}/{account}", n=u.namespace, account="default"), \
                hint("MST0503", workload=str(u.ref), namespace=u.namespace, name=u.ref.name)


@readiness("MST0504")
def policy_not_enforced(ctx: Context) -> Iterator[Found]:
    yield from without_sidecar(ctx, "MST0504", "no sidecar enforces the policy for it")
