"""Revisions and upgrades: proxies left on an old revision, the default tag, version skew, revisions ready to
remove (MST09xx), and the gates of the upgrade template's stages. The facts come from cluster.revisions."""
from __future__ import annotations

from collections.abc import Iterator

from analysis import kubernetes_support
from analysis.base import Context
from analysis.catalog import fill
from analysis.readiness.scope import Found, hint, readiness
from cluster import control_plane, istio_releases, revisions
from cluster.errors import MeshstepError
from cluster.model import Ref
from cluster.versions import minor


def _workload_hint(code: str, p: revisions.Proxy) -> str:
    return hint(code, kind=p.pod.workload_kind.lower(), workload=p.pod.workload_name, namespace=p.pod.namespace)


@readiness("MST0901")
def gateway_on_old_revision(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    up = revisions.upgrade(inv)
    if up is None:
        return
    for p in revisions.proxies(inv):
        if p.kind in ("gateway", "ztunnel") and p.revision != up.to_revision:
            yield (p.pod.ref, f"{p.component} {p.pod.name} is on revision {p.revision} "
                   f"({p.version or 'version unknown'}) while {up.to_revision} "
                   f"({up.to_version or 'version unknown'}) is installed", _workload_hint("MST0901", p))


@readiness("MST0902")
def default_tag_on_old_revision(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    up = revisions.upgrade(inv)
    if up is None or up.default_tag is None or up.default_tag == up.to_revision:
        return
    moved = [n.namespace for n in up.namespaces if n.injects == up.to_revision]
    if moved:
        yield (Ref("MutatingWebhookConfiguration", None, revisions.TAG_WEBHOOK.format(tag="default")),
               f"the default tag points at {up.default_tag} while {', '.join(moved)} already inject from "
               f"{up.to_revision}", hint("MST0902", revision=up.to_revision))


@readiness("MST0903")
def proxy_version_skew(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    versions = {r.revision: r.version for r in inv.revisions}
    for p in revisions.proxies(inv):
        proxy, istiod = minor(p.version), minor(versions.get(p.revision))
        problem = istio_releases.skew_problem(proxy, istiod) if proxy and istiod else None
        if problem:
            yield (p.pod.ref, f"{p.kind} proxy {p.version} connected to istiod {versions[p.revision]} (revision "
                   f"{p.revision}): {problem} ({istio_releases.SOURCE})", _workload_hint("MST0903", p))


@readiness("MST0904")
def revision_unused(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    if len(inv.revisions) < 2:
        return
    used = {n.revision for n in revisions.namespace_revisions(inv).values()} | {
        p.revision for p in revisions.proxies(inv)}
    for r in revisions.installed(inv):
        if r.revision not in used:
            tags = f"; move its tags ({', '.join(r.tags)}) first" if r.tags else ""
            yield (Ref("Deployment", r.namespace, f"istiod-{r.revision}"),
                   f"revision {r.revision} ({r.version or 'version unknown'}) has no namespace and no proxy left: "
                   f"ready to remove{tags}", hint("MST0904", revision=r.revision))


@readiness("MST0905")
def proxy_revision_missing(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    if not inv.revisions:
        return  # manifests without a control plane: nothing to compare with
    known = {r.revision for r in inv.revisions}
    for p in revisions.proxies(inv):
        if p.revision not in known:
            yield (p.pod.ref, fill("{kind} proxy is connected to revision {revision}, which has no istiod here",
                                   kind=p.kind, revision=p.revision),
                   _workload_hint("MST0905", p))


# ---------------------------------------------------------------- gates of the upgrade template's stages


@readiness("MST0906")
def upgrade_target_not_ready(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    try:
        r = revisions.target(inv, ctx.params.get("revision", ""))
    except MeshstepError:
        return  # no such revision: the stage's rendering says so
    if not revisions.ready(r):
        yield (Ref("Deployment", r.namespace, f"istiod-{r.revision}"),
               f"istiod revision {r.revision}: {r.ready_pods} of {r.istiod_pods} pods ready",
               hint("MST0906", revision=r.revision, namespace=r.namespace))


@readiness("MST0907", "Service", "ConfigMap", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
def revision_still_in_use(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    revs = revisions.installed(inv)
    old = ctx.params.get("revision") or (revs[0].revision if len(revs) > 1 else None)
    left = revisions.uses(inv, old) if old else []
    if left:
        yield (Ref("Deployment", revs[0].namespace, f"istiod-{old}"),
               f"revision {old} is still used by {len(left)}: {'; '.join(left[:5])}{' …' if len(left) > 5 else ''}",
               hint("MST0907", revision=old, uses="; ".join(left[:3])))


@readiness("MST0908", "Service", "ConfigMap")
def workload_names_another_control_plane(ctx: Context) -> Iterator[Found]:
    inv = ctx.inventory
    if not inv.revisions:
        return
    for ref in control_plane.references(inv):
        w = inv.workload(ref.referrer.namespace or "", ref.referrer.kind, ref.referrer.name)
        label = w.template.labels.get("istio.io/rev") if w is not None and w.template is not None else None
        if label is None:
            continue
        labelled, named = revisions.resolve(inv, label), revisions.resolve(inv, ref.revision)
        if labelled != named:
            yield (ref.referrer, f"labelled for revision {labelled}, its {ref.what} names revision {named}: its "
                   f"proxies take config and certificates from {named} and are missing from `istioctl "
                   f"proxy-status --revision {labelled}`",
                   hint("MST0908", kind=ref.referrer.kind.lower(), workload=ref.referrer.name,
                        namespace=ref.referrer.namespace or "", revision=labelled))



def _release_to_install(ctx: Context) -> str | None:
    """The version of the Istio release revision-install's stage installs (its params, as the feature reads them);
    None when there is none, or its version is not a release's."""
    target = revisions.to_install(ctx.inventory, ctx.params.get("revision", ""), ctx.params.get("version", ""))
    version = target[1] if target else None
    return version if version and minor(version) else None


@readiness("MST0909", "Node")
def kubernetes_unsupported_by_release(ctx: Context) -> Iterator[Found]:
    release = _release_to_install(ctx)
    for o in (kubernetes_support.outside(ctx.inventory, release) if release else None) or ():  # None: see MST0910
        yield (o.nodes[0], o.message,
               hint("MST0909", kubernetes=o.kubernetes, source=kubernetes_support.SOURCE, low=o.low, high=o.high))


@readiness("MST0910", "Node")
def kubernetes_support_unknown(ctx: Context) -> Iterator[Found]:
    version = _release_to_install(ctx)
    if version is None:
        return  # no release to install, or a build whose version is not a release
    unknown = kubernetes_support.unknown(ctx.inventory, version)
    if unknown is not None:
        yield *unknown, hint("MST0910", source=kubernetes_support.SOURCE)
