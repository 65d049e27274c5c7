"""The property of issue 12, for every registered feature, every scope it takes and every cluster of the corpus
(tests/features/corpus.py), plus clusters Hypothesis generates:

    render (behind the gate and the invariants) → apply to the overlay → the invariants hold → detection sees the
    feature on in that scope → its rollback, computed on the overlay, gives back the cluster it started from.

A rendering the gate refuses, or that cannot be made for the cluster, is a refusal, not a pass; it must say why, and
never be one of meshstep's own failures (a lost field, an HTTP route to another protocol's port, a rollback that
does not restore). The number of (cluster, feature, scope) cases and how they ended is printed at the end of the
test session; a meaningful share must render."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from cluster.changes import diff, normalized_yaml, ref_of
from cluster.errors import MeshstepError
from cluster.inventory import Inventory
from cluster.queries import application_namespace
from features._gate import render_gated
from features.base import MESH, Feature, Refused, apply, deletions_of, registry, validate_params
from tests.features import corpus
from tests.features.test_lifecycle import CASES, on_in, with_dependencies

# meshstep's own failures: a refusal with one of these is a bug in a feature, not something about the cluster
OWN_FAILURES = ("MST0810", "MST0811", "MST0814")


def scopes(feature: Feature, inv: Inventory) -> list[str]:
    out = [MESH] if MESH in feature.scopes else []
    if "namespace" in feature.scopes:
        out += [n for n in inv.namespace_names() if application_namespace(inv, n)]
    return out


def params(feature: Feature) -> dict[str, Any]:
    return CASES.get(feature.id, (None, {}))[1]


def case(inv: Inventory, feature: Feature, scope: str) -> str:
    """One (cluster, feature, scope): how it ended — rendered, already on, or refused (with its reason)."""
    p = params(feature)
    try:
        base = with_dependencies(feature, inv, scope)
        rendered, _ = render_gated(feature, p, scope, base)
    except Refused as e:
        own = [m for m in e.findings if m.code in OWN_FAILURES]
        assert not own, f"{feature.id} in {scope}: {own[0].code} {own[0].message}"
        assert e.findings
        return "refused"
    except MeshstepError as e:
        assert str(e).strip(), f"{feature.id} in {scope}: refused without a reason"
        return "refused"
    after = apply(rendered, base)
    # what the notes' install commands make and the restarts they ask for (an overlay runs neither)
    checked = validate_params(feature, p)
    after = after.with_changes(apply=feature.commanded(checked, scope, after))
    after = after.with_changes(pods=feature.restarted_pods(checked, scope, after))
    assert on_in(feature, after, scope), f"{feature.id}: not detected in {scope} once rendered and applied"

    # the YAML a person applies holds exactly these objects, each under its header
    docs = [d for d in yaml.safe_load_all(rendered.yaml) if d]
    assert [normalized_yaml(d) for d in docs] == [normalized_yaml(o) for o in rendered.objects]
    assert rendered.yaml.count("# meshstep: ") == len(rendered.objects)  # a header announces an object, only
    assert deletions_of(rendered.yaml) == list(rendered.delete)

    undo = feature.rollback(p, scope, after)
    back = apply(undo, after)
    for ref in {ref_of(o) for o in rendered.objects} | {ref_of(o) for o in undo.objects} | set(undo.delete):
        was, now = base.get(ref.kind, ref.namespace, ref.name), back.get(ref.kind, ref.namespace, ref.name)
        assert normalized_yaml(was and was.raw) == normalized_yaml(now and now.raw), \
            f"{feature.id} in {scope}: the rollback does not restore {ref}"
    return "already on" if diff(rendered.objects, rendered.delete, base).empty else "rendered"


def run_all(inv: Inventory, record) -> Counter:
    outcomes: Counter = Counter()
    for feature in registry().values():
        for scope in scopes(feature, inv):
            outcomes[case(inv, feature, scope)] += 1
    record("property_cases", dict(outcomes))
    return outcomes


@pytest.mark.parametrize("cluster", corpus.corpus(), ids=lambda c: c.name)
def test_every_feature_in_every_scope_of_the_corpus(cluster: corpus.Cluster, record_property):
    inv = corpus.loadable(cluster)
    if inv is None:
        pytest.skip(f"{cluster.name} is not a readable cluster (an analyzer input error case)")
    outcomes = run_all(inv, record_property)
    if not cluster.name.startswith("analyzer/"):  # an application cluster: most of it must really render
        assert outcomes["rendered"] + outcomes["already on"] >= sum(outcomes.values()) / 2, outcomes


# record_property is function-scoped: each generated cluster adds its outcomes to the same report
@settings(max_examples=8, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(objects=corpus.clusters())
def test_every_feature_in_every_scope_of_generated_clusters(objects, record_property):
    run_all(corpus.generated(objects), record_property)
