"""Helpers every check family shares: hosts, exportTo, label selectors."""
from __future__ import annotations

import pytest

from cluster.decode import pod_spec_summary
from cluster.inventory import build_inventory
from cluster.queries import (
    exported_to,
    fqdn,
    host_matches,
    hosts_overlap,
    inject_asked,
    injection_requested,
    opted_out,
    selector_matches,
)
from cluster.snapshot import Snapshot


@pytest.mark.parametrize("host,pattern,ok", [
    ("reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local", True),
    ("reviews.default.svc.cluster.local", "ratings.default.svc.cluster.local", False),
    ("a.eu.example.com", "*.eu.example.com", True),
    ("eu.example.com", "*.eu.example.com", False),
    ("*.eu.example.com", "*.example.com", True),
    ("*.example.com", "*.eu.example.com", False),
    ("anything", "*", True),
])
def test_host_matches(host, pattern, ok):
    assert host_matches(host, pattern) is ok


def test_hosts_overlap_is_symmetric():
    assert hosts_overlap("*.d", "*.productpage.d") and hosts_overlap("*.productpage.d", "*.d")
    assert not hosts_overlap("a.example.com", "b.example.com")


@pytest.mark.parametrize("host,expected", [
    ("reviews", "reviews.shop.svc.cluster.local"),
    ("reviews.other.svc.cluster.local", "reviews.other.svc.cluster.local"),
    ("*.example.com", "*.example.com"),
])
def test_fqdn_resolves_short_names_in_the_objects_namespace(host, expected):
    assert fqdn(host, "shop") == expected


@pytest.mark.parametrize("export_to,reader,ok", [
    (None, "any", True), (["*"], "any", True), (["."], "owner", True), (["."], "other", False),
    (["other"], "other", True), (["other"], "third", False), (["~"], "owner", False),
])
def test_exported_to(export_to, reader, ok):
    assert exported_to(export_to, "owner", reader) is ok


@pytest.mark.parametrize("selector,labels,ok", [
    (None, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "1"}, True),
])
def test_selector_matches(selector, labels, ok):
    assert selector_matches(selector, labels) is ok


@pytest.mark.parametrize("labels,annotations,asked", [
    ({"sidecar.istio.io/inject": "true"}, {"sidecar.istio.io/inject": "false"}, "true"),
    ({"sidecar.istio.io/inject": "false"}, {"sidecar.istio.io/inject": "true"}, "false"),
    ({}, {"sidecar.istio.io/inject": "false"}, "false"),
    ({"sidecar.istio.io/inject": ""}, {"sidecar.istio.io/inject": "false"}, None),
    ({}, {}, None),
])
def test_the_inject_label_wins_over_the_annotation(labels, annotations, asked):
    """As the injector reads sidecar.istio.io/inject: the label, when the pod has it, else the annotation."""
    template = pod_spec_summary({"labels": labels, "annotations": annotations}, {"containers": [{"name": "app"}]})
    assert inject_asked(template) == asked
    assert opted_out(template) is (asked == "false")
    inv = build_inventory(Snapshot("test", lambda _v: iter([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}}])))
    assert injection_requested(inv, "plain", template) is (asked == "true")
