from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text

from app.cli import main
from state import audit
from state.store import Store


@pytest.fixture
def run(db_url, capsys, monkeypatch):
    """`meshstep ARGS --db URL` → (exit status, stdout, stderr), on a machine without a cluster (source: demo)."""
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("MESHSTEP_ACTOR", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--db", db_url])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_flags_round_trip(run, monkeypatch):
    assert run("flags", "list") == (0, "(none)\n", "")
    code, out, _ = run("flags", "set", "tracing", "--scope", "mesh", "--set", "sampling=2.5",
                       "--set", "provider=zipkin", "--reason", "see calls", "--actor", "alice")
    assert (code, out) == (0, "tracing in mesh on demo: on (version 1)\n")
    monkeypatch.setenv("MESHSTEP_ACTOR", "bob")
    assert run("flags", "set", "sidecar-injection", "--scope", "shop", "--state", "enabling", "--reason", "go",
               "--cluster", "prod")[0] == 0

    code, out, _ = run("flags", "list", "--format", "json")
    (flag,) = json.loads(out)
    # Recorded as the feature takes them: typed, with the defaults of what was not given.
    assert flag["params"] == {"provider": "zipkin", "sampling": 2.5} and flag["changed_by"] == "alice"
    code, out, _ = run("flags", "list", "--cluster", "prod")
    assert out.splitlines()[0].split()[:4] == ["FEATURE", "SCOPE", "STATE", "PARAMS"]
    assert out.splitlines()[1].split()[:3] == ["sidecar-injection", "shop", "enabling"] and "bob" in out

    code, _, err = run("flags", "set", "tracing", "--scope", "mesh", "--reason", "late", "--expect-version", "0")
    assert code == 3 and "was changed by alice" in err and "Traceback" not in err
    assert run("flags", "unset", "tracing", "--scope", "mesh", "--reason", "rollback",
               "--expect-version", "1")[:2] == (0, "tracing in mesh on demo: no longer recorded\n")
    assert run("flags", "list") == (0, "(none)\n", "")


def test_without_expect_version_the_last_writer_wins_and_is_told(run):
    assert run("flags", "set", "metrics", "--scope", "mesh", "--reason", "a", "--actor", "alice")[2] == ""
    code, out, err = run("flags", "set", "metrics", "--scope", "mesh", "--reason", "b", "--actor", "bob")
    assert (code, out) == (0, "metrics in mesh on demo: on (version 2)\n")
    assert err == ("note: this replaced version 1 as it stood, whoever wrote it: pass --expect-version with the "
                   "version you looked at to refuse a change made since\n")
    assert run("flags", "set", "metrics", "--scope", "mesh", "--reason", "c", "--expect-version", "2")[2] == ""


def test_user_errors_exit_2_without_traceback(run):
    for args, message in [
        (("flags", "set", "metrics", "--scope", "mesh", "--set", "novalue", "--reason", "r"), "write it as key=value"),
        (("flags", "set", "metrics", "--scope", "mesh", "--state", "half", "--reason", "r"), "unknown flag state"),
        (("flags", "set", "mtls-strictt", "--scope", "mesh", "--reason", "typo"), "did you mean mtls-strict or"),
        (("flags", "set", "tracing", "--scope", "mesh", "--set", "rate=1", "--reason", "r"),
         "tracing: unknown parameter(s) rate"),
        (("flags", "set", "tracing", "--scope", "mesh", "--set", "sampling=lots", "--reason", "r"),
         "sampling='lots' is not a valid float"),
        (("flags", "unset", "x", "--scope", "mesh", "--reason", "r"), "no flag x in mesh"),
        (("audit", "--since", "yesterday"), "is not a date"),
    ]:
        code, _, err = run(*args)
        assert (code, err.startswith("error: "), message in err) == (2, True, True), err


def test_actor_defaults_to_the_os_user(run, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "os-user")
    run("flags", "set", "metrics", "--scope", "mesh", "--reason", "dashboards")
    assert json.loads(run("flags", "list", "-o", "json")[1])[0]["changed_by"] == "os-user"


def test_audit_list_exports_and_verify(run, db_url, tmp_path):
    run("flags", "set", "mtls-strict", "--scope", "mesh", "--reason", "encrypt", "--actor", "alice")
    run("flags", "set", "tracing", "--scope", "mesh", "--set", "sampling=0.5", "--reason", "see", "--actor", "bob")

    code, out, _ = run("audit")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["SEQ", "1", "2", "3"]
    assert json.loads(run("audit", "--export", "json")[1])[2]["after"]["params"] == {"provider": "", "sampling": 0.5}
    assert [r["actor"] for r in csv.DictReader(io.StringIO(run("audit", "--export", "csv")[1]))] == [
        "alice", "alice", "bob"]
    assert json.loads(run("audit", "--export", "json", "--since", "2999-01-01")[1]) == []
    # Without a readable source the report leaves its drift section out.
    code, out, err = run("audit", "--verify", "--export", "markdown", "--source", str(tmp_path / "gone.yaml"))
    assert code == 0 and err.startswith("audit chain verified: 3 events, hash keys ")
    assert "\nwarning: the report has no drift section" in err
    assert out.startswith("# meshstep audit report")
    code, out, err = run("audit", "--verify")
    assert (code, err) == (0, "") and out.startswith("audit chain verified: 3 events, hash keys ")
    assert out.rstrip().endswith(f"checkpoint at event 3 ({audit.checkpoint_path()})")

    store = Store.open(db_url)
    with store.engine.begin() as c:
        c.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
    store.close()
    code, out, err = run("audit", "--verify")
    assert (code, out) == (1, "") and err.startswith("audit chain broken: event 2 was altered\n(verified with the "
                                                     "audit key ")


def test_audit_names_plans_and_stages_as_people_know_them(run):
    """`plan:1` and `stage:14` are the chain's stable targets; the listing says which plan and stage they are, from
    the snapshots the events carry, so a deleted plan keeps its name in the trail."""
    assert run("plan", "new", "--template", "routing-first", "--name", "rollout", "--source", "demo")[0] == 0
    assert run("plan", "advance", "--rehearse", "--name", "rollout", "--source", "demo")[0] == 0
    code, out, _ = run("audit", "--export", "json")
    targets = {ev["target"] for ev in json.loads(out)}
    plan = next(t for t in targets if t.startswith("plan:"))
    stage = next(t for t in targets if t.startswith("stage:"))
    code, out, _ = run("audit")
    assert code == 0
    assert f"{plan} rollout" in out
    assert f"{stage} rollout #1 Verify the Istio install" in out
    assert run("plan", "delete", "rollout", "--reason", "done with it", "--source", "demo")[0] == 0
    assert f"{plan} rollout" in run("audit")[1]
