"""A rendering's YAML heads its objects with comments that quote what the cluster says (the label a command sets, an
object's name, a parameter): a line break in such a value must not end the comment, or what follows it would be
read as YAML — objects a value wrote into what people apply."""
from __future__ import annotations

import yaml

from cluster.model import Ref
from features.base import Rendered

INJECTED = "x\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: owned}\n"


def test_a_value_s_line_breaks_never_end_a_comment() -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"istio.io/rev": INJECTED}}}
    for brk in ("\n", "\r", "\r\n", "\x85", "\u2028", "\u2029"):
        value = INJECTED.replace("\n", brk)
        rendered = Rendered("sidecar-injection", "shop", {"revision": value}, (ns,), (Ref("Namespace", None, value),),
                            (f"kubectl label namespace shop 'istio.io/rev={value}' --overwrite", f"# {value}"))
        docs = [d for d in yaml.safe_load_all(rendered.yaml) if d]
        assert docs == [ns], (repr(brk), docs)
        assert all(line.startswith("#") for line in rendered.yaml.split("---\n")[0].splitlines())
