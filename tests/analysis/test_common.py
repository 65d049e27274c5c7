"""Helpers every check family shares: hosts, exportTo, label selectors."""
from __future__ import annotations

import pytest

from planner.analysis.common import exported_to, fqdn, host_matches, hosts_overlap, selector_matches


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
