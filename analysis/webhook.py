"""Injector webhook checks (istioctl's webhook analyzer): webhooks pointing at a Service that does not exist, and
injector webhooks of different revisions that would both inject the same pod."""
from __future__ import annotations

from collections.abc import Iterator

from analysis.base import Context, check
from cluster.model import KubeObject, Ref
from cluster.queries import injector_webhooks, webhook_selects


def _ref(cfg: KubeObject) -> Ref:
    return Ref(cfg.kind, None, cfg.name)


@check("IST0139", "Point the webhook's clientConfig.service at istiod's Service (kubectl get svc -n istio-system), and "
       "keep one injector webhook per set of namespaces (istioctl tag list shows which revision each "
       "serves).",
       reads=("MutatingWebhookConfiguration", "Service", "Namespace"))
def invalid_webhook(ctx: Context) -> Iterator[tuple[Ref, str]]:
    inv = ctx.inventory
    hooks = injector_webhooks(inv)
    for cfg, wh in hooks:
        svc = (wh.get("clientConfig") or {}).get("service")
        if svc and inv.service(svc.get("namespace") or "default", svc.get("name") or "") is None:
            yield _ref(cfg), (f"Webhook {wh.get('name')} of {cfg.name} refers to service "
                              f"{svc.get('namespace')}/{svc.get('name')}, which does not exist")
    # Label sets a pod and its namespace could carry: the cluster's namespaces, and what each webhook asks for.
    ns_candidates = [ns.labels for ns in inv.namespaces.values()]
    ns_candidates += [(wh.get("namespaceSelector") or {}).get("matchLabels") or {} for _, wh in hooks]
    obj_candidates = [{}] + [(wh.get("objectSelector") or {}).get("matchLabels") or {} for _, wh in hooks]
    for i, (cfg_a, a) in enumerate(hooks):
        for cfg_b, b in hooks[i + 1:]:
            if cfg_a is cfg_b:
                continue  # one configuration's webhooks are written together to be disjoint
            both = next(((n, o) for n in ns_candidates for o in obj_candidates
                         if webhook_selects(a, n, o) and webhook_selects(b, n, o)), None)
            if both is not None:
                for me, other in ((cfg_a, cfg_b), (cfg_b, cfg_a)):
                    yield _ref(me), (f"Webhooks {cfg_a.name} and {cfg_b.name} both inject pods with namespace "
                                     f"labels {both[0]} and object labels {both[1]} (webhook of {other.name})")
