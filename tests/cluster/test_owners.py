"""cluster/owners.py: managedFields' FieldsV1 read as the Kubernetes docs describe it (server-side-apply/#field-
management: `f:` a field, `k:` a list item by its keys, `v:` a set item by its value, `.` the item itself), and the
fields a rendered object would change that another field manager owns."""
from __future__ import annotations

import copy

import yaml

from cluster.owners import FieldPath, keeps_ownership, owned_paths, owners, slimmed, taken

# As `kubectl get deployment -n shop reviews -o yaml --show-managed-fields` prints it: applied client-side by
# kubectl, scaled by an HPA-less `kubectl scale` (Update on the scale subresource), status written by the controller.
DEPLOYMENT = yaml.safe_load("""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews
  namespace: shop
  labels: {app: reviews}
  annotations: {deployment.kubernetes.io/revision: "1"}
  managedFields:
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:annotations:
          .: {}
          f:kubectl.kubernetes.io/last-applied-configuration: {}
        f:labels:
          .: {}
          f:app: {}
      f:spec:
        f:selector: {}
        f:template:
          f:metadata:
            f:labels:
              .: {}
              f:app: {}
          f:spec:
            f:containers:
              k:{"name":"reviews"}:
                .: {}
                f:image: {}
                f:name: {}
                f:ports:
                  .: {}
                  k:{"containerPort":9080,"protocol":"TCP"}:
                    .: {}
                    f:containerPort: {}
                    f:protocol: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2026-01-05T10:00:00Z"
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:replicas: {}
    manager: kubectl
    operation: Update
    subresource: scale
    time: "2026-01-06T10:00:00Z"
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:annotations:
          f:deployment.kubernetes.io/revision: {}
    manager: kube-controller-manager
    operation: Update
    time: "2026-01-06T10:00:01Z"
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:status:
        f:replicas: {}
    manager: kube-controller-manager
    operation: Update
    subresource: status
    time: "2026-01-06T10:00:01Z"
spec:
  replicas: 2
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews}}
    spec:
      containers:
      - name: reviews
        image: reviews:1
        ports: [{containerPort: 9080, protocol: TCP}]
status: {replicas: 2}
""")

# A VirtualService synced by Argo CD (server-side apply), its status written by istiod.
VIRTUAL_SERVICE = yaml.safe_load("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
  labels: {app.kubernetes.io/instance: shop}
  managedFields:
  - apiVersion: networking.istio.io/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:labels:
          f:app.kubernetes.io/instance: {}
      f:spec:
        f:hosts: {}
        f:http: {}
    manager: argocd-controller
    operation: Apply
    time: "2026-01-05T10:00:00Z"
  - apiVersion: networking.istio.io/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:status:
        f:observedGeneration: {}
    manager: pilot-discovery
    operation: Update
    subresource: status
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
status: {observedGeneration: 1}
""")


def test_fields_v1_is_read_as_documented() -> None:
    entries = {(o.manager, o.operation, o.subresource): o for o in owners(DEPLOYMENT)}
    kubectl = entries["kubectl-client-side-apply", "Update", ""]
    assert FieldPath((("f", "spec"), ("f", "template"), ("f", "spec"), ("f", "containers"),
                      ("k", {"name": "reviews"}), ("f", "image")), leaf=True) in kubectl.paths
    # `.`: the item itself (its presence) is owned, apart from its fields
    assert FieldPath((("f", "metadata"), ("f", "labels")), leaf=False) in kubectl.paths
    port = [p for p in kubectl.paths if ("k", {"containerPort": 9080, "protocol": "TCP"}) in p.elements]
    assert {str(p) for p in port} == {
        '.spec.template.spec.containers[name="reviews"].ports[containerPort=9080,protocol="TCP"]',
        '.spec.template.spec.containers[name="reviews"].ports[containerPort=9080,protocol="TCP"].containerPort',
        '.spec.template.spec.containers[name="reviews"].ports[containerPort=9080,protocol="TCP"].protocol'}
    # a set's item by value
    assert [str(p) for p in owned_paths({"f:metadata": {"f:finalizers": {"v:\"kubernetes\"": {}}}})] == \
        ['.metadata.finalizers[="kubernetes"]']
    # status is not the object's configuration: never owned as what a stage writes (a status-only entry is none)
    assert sorted(entries) == [("kube-controller-manager", "Update", ""), ("kubectl", "Update", "scale"),
                               ("kubectl-client-side-apply", "Update", "")]
    assert [str(p) for p in entries["kube-controller-manager", "Update", ""].paths] == [
        ".metadata.annotations.deployment.kubernetes.io/revision"]


def test_the_kept_form_says_the_same_owners_in_less() -> None:
    kept = slimmed(DEPLOYMENT["metadata"]["managedFields"])
    assert kept is not None and len(kept) == 3 and all("time" not in e for e in kept)  # the status-only one is gone
    assert owners({"metadata": {"managedFields": kept}}) == owners(DEPLOYMENT)
    assert slimmed([{"manager": "x", "fieldsV1": {"f:status": {"f:phase": {}}}}]) is None
    assert slimmed("not a list") is None


def test_a_changed_field_names_its_owner_and_an_unchanged_one_does_not() -> None:
    new = copy.deepcopy(VIRTUAL_SERVICE)
    del new["metadata"]["managedFields"], new["status"]
    assert taken(VIRTUAL_SERVICE, new) == []  # the same values: shared, never a conflict
    new["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v2"
    new["metadata"]["annotations"] = {"rollback.meshstep.io/request-routing": "{}"}  # a field nobody owns
    found = taken(VIRTUAL_SERVICE, new)
    assert [(t.manager, t.operation, t.changed, t.removed) for t in found] == [
        ("argocd-controller", "Apply", (".spec.http",), ())]


def test_list_items_are_matched_by_their_keys_and_removals_said_apart() -> None:
    new = copy.deepcopy(DEPLOYMENT)
    del new["metadata"]["managedFields"], new["status"]
    containers = new["spec"]["template"]["spec"]["containers"]
    containers.insert(0, {"name": "istio-proxy", "image": "proxyv2:1.27"})  # order moves; keyed items do not
    assert taken(DEPLOYMENT, new) == []
    containers[1]["image"] = "reviews:2"
    del new["metadata"]["labels"]["app"]
    new["spec"]["replicas"] = 3  # owned through the scale subresource: the same field of the object
    found = {t.manager: t for t in taken(DEPLOYMENT, new)}
    assert found["kubectl-client-side-apply"].changed == ('.spec.template.spec.containers[name="reviews"].image',)
    assert found["kubectl-client-side-apply"].removed == (".metadata.labels.app",)
    assert found["kubectl"].changed == (".spec.replicas",)
    # meshstep's own fields are its own to change
    mine = copy.deepcopy(DEPLOYMENT)
    for e in mine["metadata"]["managedFields"]:
        e["manager"] = "meshstep"
    assert taken(mine, new) == []


def test_ownership_is_kept_for_the_kinds_meshstep_changes_only() -> None:
    assert keeps_ownership(VIRTUAL_SERVICE) and keeps_ownership(DEPLOYMENT)
    assert keeps_ownership({"apiVersion": "v1", "kind": "Namespace"})
    assert keeps_ownership({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute"})
    assert not keeps_ownership({"apiVersion": "v1", "kind": "Pod"})
    assert not keeps_ownership({"apiVersion": "v1", "kind": "Secret"})
    assert not keeps_ownership({"apiVersion": "apps/v1", "kind": "ReplicaSet"})


def test_an_overlay_takes_over_no_field_its_change_writes() -> None:
    """A stage applied to an overlay leaves each object's owners as they were (server-side apply without force
    takes over nothing): the next stage's gate still sees Argo CD own the route the first one changed."""
    from cluster.inventory import assemble
    from cluster.snapshot import Visibility

    inv = assemble("test", True, Visibility(), {}, [], [copy.deepcopy(VIRTUAL_SERVICE)])
    new = copy.deepcopy(VIRTUAL_SERVICE)
    del new["metadata"]["managedFields"], new["status"]
    new["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v2"
    after = inv.with_changes(apply=[new]).get("VirtualService", "shop", "reviews")
    assert after is not None and after.spec["http"][0]["route"][0]["destination"]["subset"] == "v2"
    assert after.raw["metadata"]["managedFields"] == VIRTUAL_SERVICE["metadata"]["managedFields"]
    assert [t.manager for t in taken(after.raw, copy.deepcopy(VIRTUAL_SERVICE))] == ["argocd-controller"]

