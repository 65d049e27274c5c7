"""`meshstep analyze`: JSON shape, exit status, the linkerd-check-like table, suppression and input errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "analysis"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["analyze", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_is_an_array_of_messages_with_null_namespace_for_cluster_scoped(capsys):
    code, out, _ = run(capsys, "--format", "json", str(FIXTURES / "mesh.yaml"))
    messages = json.loads(out)
    assert code == 1  # the fixture has errors
    assert {"code", "level", "kind", "namespace", "name", "message"} <= set(messages[0])
    ns = next(m for m in messages if m["kind"] == "Namespace")
    assert ns["namespace"] is None and ns["name"] in ("batch", "legacy")
    assert all(m["level"] in ("error", "warning", "info") for m in messages)


def test_exit_zero_when_nothing_is_at_error_level(capsys, tmp_path):
    clean = tmp_path / "clean.yaml"
    clean.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: batch\n")  # only an info
    code, out, _ = run(capsys, "--format", "json", str(clean))
    assert code == 0 and [m["code"] for m in json.loads(out)] == ["IST0102"]


def test_exit_zero_and_a_pass_line_when_there_is_nothing_to_say(capsys, tmp_path):
    clean = tmp_path / "clean.yaml"
    clean.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n  labels:\n"
                     "    istio-injection: enabled\n")
    code, out, _ = run(capsys, str(clean))
    assert code == 0 and "no validation issues" in out


def test_table_lists_level_code_resource_message_hint_and_reference_page(capsys):
    code, out, _ = run(capsys, str(FIXTURES / "routing.yaml"))
    assert code == 1
    lines = out.splitlines()
    i = lines.index("‼ warning IST0174 DestinationRule shop/payments")
    assert lines[i + 1] == ("    The host payments.shop.svc.cluster.local defined in the DestinationRule does not "
                            "match any services in the mesh.")
    assert lines[i + 2].startswith("    hint: ")
    assert lines[i + 3] == "    see https://istio.io/latest/docs/reference/config/analysis/ist0174/"
    # Errors first; every finding's head line starts with its level's mark.
    heads = [line for line in lines if line and not line.startswith(" ")][:-1]
    assert heads[0].startswith("× error") and all(h[0] in "×‼ℹ" for h in heads)
    assert lines[-1].startswith("8 errors, 3 warnings")


def test_suppress_flag_hides_matching_messages_and_can_clear_errors(capsys):
    path = str(FIXTURES / "routing.yaml")
    code, out, _ = run(capsys, "--format", "json", "--suppress", "IST01*=VirtualService shop/*",
                       "-S", "IST0173=DestinationRule *", path)
    assert code == 0
    assert [(m["code"], m["name"]) for m in json.loads(out)] == [("IST0174", "payments")]


def test_mesh_config_file_is_honoured(capsys, tmp_path):
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("defaultProviders:\n  accessLogging: [envoy]\n")
    _, out, _ = run(capsys, "--format", "json", "--mesh-config", str(mesh), str(FIXTURES / "mesh.yaml"))
    assert "IST0157" not in {m["code"] for m in json.loads(out)}


@pytest.mark.parametrize("argv,says", [
    (["--suppress", "IST0102", "FILE"], "CODE=Kind name"),
    (["--mesh-config", "MISSING", "FILE"], "--mesh-config"),
    (["--mesh-config", "LIST", "FILE"], "expected a mapping"),
    (["does-not-exist.yaml"], "no such file"),
    (["--source", "demo", "FILE"], "not both"),
])
def test_input_errors_exit_2_with_a_clear_message(capsys, tmp_path, argv, says):
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    subst = {"FILE": str(FIXTURES / "mesh.yaml"), "MISSING": str(tmp_path / "nope.yaml"), "LIST": str(listing)}
    code, _out, err = run(capsys, *[subst.get(a, a) for a in argv])
    assert code == 2 and says in err and "Traceback" not in err
