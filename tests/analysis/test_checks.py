"""The istioctl-compatible checks, table-driven over small clusters in tests/fixtures/analysis: each `<name>.yaml`
has `<name>.expected` beside it, one `CODE Kind namespace/name` line per message analyze must report."""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from analysis import catalog
from analysis.base import LEVELS, Suppression, analyze_checks, gate_checks, registry
from analysis.common import analyze, with_dummy_ingress
from cluster.inventory import build_inventory
from cluster.sources import files_snapshot, load_snapshot

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "analysis"
SCENARIOS = sorted(p.stem for p in FIXTURES.glob("*.expected"))


def inventory(*names: str, mesh_config: dict | None = None):
    snapshot = with_dummy_ingress(files_snapshot([FIXTURES / f"{n}.yaml" for n in names]))
    return build_inventory(snapshot, mesh_config=mesh_config)


def found(messages) -> Counter:
    return Counter(f"{m.code} {m.ref}" for m in messages)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_reports_exactly_the_expected_messages(scenario):
    expected = Counter(line.strip() for line in (FIXTURES / f"{scenario}.expected").read_text().splitlines()
                       if line.strip())
    assert found(analyze(inventory(scenario))) == expected


REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "istio-reference" / "analyzer"
needs_reference = pytest.mark.skipif(not REFERENCE.exists(), reason="istio reference data not present")


@needs_reference
def test_the_ist_table_is_generated_from_istios_messages_yaml():
    table = Path(catalog.__file__).with_name("istio_messages.py").read_text()
    assert table == catalog.istio_table(REFERENCE / "messages.yaml"), (
        "run: python -m analysis.catalog --istio-messages ../shared/istio-reference/analyzer/messages.yaml "
        "> analysis/istio_messages.py")
    import yaml

    istio = {m["code"]: (m["name"], m["level"].lower(), m["template"])
             for m in yaml.safe_load((REFERENCE / "messages.yaml").read_text())["messages"]}
    ist = [c for c in registry() if c.code.startswith("IST")]
    assert ist, "no IST checks registered"
    for c in ist:
        assert (c.name, c.level) == istio[c.code][:2], f"{c.code} ({c.family}.{c.fn.__name__})"
        assert catalog.ISTIO[c.code].template == istio[c.code][2]
        assert c.level in LEVELS and c.hint, f"{c.code} has no hint"


def _template_pattern(template: str) -> re.Pattern[str]:
    """Istio's Go template as a regular expression: each verb stands for any text (%q for a quoted one)."""
    parts = re.split(r"(%[svdq])", template)
    return re.compile("".join('".*"' if p == "%q" else ".*" if re.fullmatch(r"%[svd]", p) else re.escape(p)
                              for p in parts), re.S)


@needs_reference
def test_every_ist_message_meshstep_writes_is_istios_template_filled_in():
    import json

    cases = json.loads((REFERENCE / "cases.json").read_text())["cases"]
    inputs = sorted({f for c in cases for f in c["input_files"]})
    seen = set()
    for f in inputs:
        for m in analyze(build_inventory(with_dummy_ingress(files_snapshot([REFERENCE / f])))):
            if m.code.startswith("IST"):
                seen.add(m.code)
                assert _template_pattern(catalog.ISTIO[m.code].template).fullmatch(m.message), (f, m.code, m.message)
    # The inputs exercise (nearly) every IST code meshstep has a check for.
    assert len(seen) >= 0.9 * len({c.code for c in registry() if c.code.startswith("IST")})


def test_go_verbs_are_filled_in_as_go_fills_them():
    assert catalog.ISTIO["IST0101"].text("host", "reviews") == 'Referenced host not found: "reviews"'
    with pytest.raises(TypeError):
        catalog.ISTIO["IST0101"].text("host", "reviews", "extra")


def test_messages_link_their_istio_io_page():
    m = next(iter(analyze(inventory("routing"))))
    assert m.url == f"https://istio.io/latest/docs/reference/config/analysis/{m.code.lower()}/"


# ---------------------------------------------------------------- suppression


def test_suppress_rule_with_wildcards_hides_only_what_it_names():
    inv = inventory("mesh")
    before = found(analyze(inv))
    after = found(analyze(inv, [Suppression.parse("IST01*=Sidecar web/*"),
                                Suppression.parse("IST0102=Namespace batch")]))
    assert before - after == Counter({"IST0111 Sidecar web/default": 1, "IST0111 Sidecar web/restrictive": 1,
                                      "IST0102 Namespace batch": 1})


def test_suppress_accepts_istioctls_name_dot_namespace_form():
    inv = inventory("mesh")
    after = found(analyze(inv, [Suppression.parse("IST0103=Pod worker-*.web")]))
    assert "IST0103 Pod web/worker-1" not in after and "IST0123 Namespace legacy" in after


def test_analyze_suppress_annotation_silences_the_annotated_resource():
    # Namespace `quiet` is unlabelled like `batch`, but its annotation suppresses IST0102.
    codes = found(analyze(inventory("mesh")))
    assert "IST0102 Namespace batch" in codes and "IST0102 Namespace quiet" not in codes


@pytest.mark.parametrize("bad", ["IST0102", "IST0102=Namespace", "=Namespace foo", "IST0102 Namespace foo"])
def test_malformed_suppress_rule_is_an_input_error(bad):
    from cluster.errors import MeshstepError

    with pytest.raises(MeshstepError, match="CODE=Kind name"):
        Suppression.parse(bad)


# ---------------------------------------------------------------- mesh config


def test_mesh_config_default_providers_make_an_empty_telemetry_entry_valid():
    codes = found(analyze(inventory("mesh", mesh_config={"defaultProviders": {"accessLogging": ["envoy"]}})))
    assert "IST0157 Telemetry web/access-logs" not in codes


def test_mesh_config_dns_auto_allocation_gives_tcp_service_entries_addresses():
    meta = {"ISTIO_META_DNS_CAPTURE": "true", "ISTIO_META_DNS_AUTO_ALLOCATE": "true"}
    codes = found(analyze(inventory("mesh", mesh_config={"defaultConfig": {"proxyMetadata": meta}})))
    assert "IST0134 ServiceEntry web/database" not in codes


def test_stage_gate_checks_do_not_run_in_analyze():
    gated = {c.code for c in registry() if c.gates}
    assert not gated & {m.code for m in analyze(inventory("mesh"))}


def test_every_check_runs_in_analyze_or_in_a_stage_gate():
    gates = {f for c in registry() for f in c.gates}
    in_gates = {id(c) for f in gates for c in gate_checks(f)}
    assert {id(c) for c in analyze_checks()}.isdisjoint(in_gates)
    assert len(analyze_checks()) + len(in_gates) == len(registry())


def test_importing_a_check_module_does_not_load_the_whole_package():
    """readiness reuses destinationrule's check by function (base.registered): importing it must not import every
    other module while it is itself half imported."""
    code = ("import sys, analysis.readiness.routing as r; from analysis import destinationrule; "
            "assert r._SUBSETS.fn is destinationrule.subset_selects_no_pods and not r._SUBSETS.gates; "
            "print(sorted(m for m in sys.modules if m.startswith('analysis.')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "analysis.telemetry" not in out and "analysis.destinationrule" in out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_messages_do_not_name_their_resource_again(scenario):
    """The renderers show the resource beside the code; a message that starts with it again reads twice. (Some
    of Istio's own templates name it further on, e.g. IST0132's "… defined in VirtualService %s …": kept.)"""
    for m in analyze(inventory(scenario)):
        assert not m.message.startswith(str(m.ref)), m


def test_a_bare_replicaset_s_pods_are_restarted_by_deleting_them(tmp_path) -> None:
    """A ReplicaSet no Deployment owns re-creates the pods deleted (injected, once the namespace is labelled); a
    bare pod is the one that nothing re-creates."""
    from analysis.readiness.scope import units

    rs_pod = {"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "cache-x1", "namespace": "legacy", "labels": {"app": "cache", "tier": "db"},
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "cache",
                                                "controller": True, "uid": "u"}]},
              "spec": {"containers": [{"name": "cache", "image": "redis:7"}]}}
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "namespace": "legacy"},
            "spec": {"containers": [{"name": "sh", "image": "busybox"}]}}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "legacy"}}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all([ns, rs_pod, bare]))
    inv = build_inventory(load_snapshot(str(path)))
    by_kind = {u.ref.kind: u for u in units(inv, ["legacy"])}
    assert by_kind["ReplicaSet"].inject(inv) == (
        "kubectl label namespace legacy istio-injection=enabled, then kubectl -n legacy delete pod "
        "-l app=cache,tier=db (its ReplicaSet cache creates them again)")
    assert "no controller re-creates it" in by_kind["Pod"].inject(inv)


def test_ist_messages_quote_the_cluster_as_values():
    """IST0103 and IST0127 are Istio's templates filled in (analysis.catalog.Filled): the pod's name and the
    policy's labels are values, shown as data and cut alone."""
    messages = {m.code: m.message for m in analyze(inventory("mesh"))}
    assert [t for t, value in getattr(messages["IST0103"], "parts", ()) if value] == ["worker-1"]
    (labels,) = [t for t, value in getattr(messages["IST0127"], "parts", ()) if value]
    assert messages["IST0127"].endswith(f"following labels: {labels}") and "=" in labels
