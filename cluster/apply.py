"""Writing a stage's objects to a cluster as Kubernetes intends: each object first sent as a server-side dry run
(`dryRun=All`, `fieldValidation=Strict`) whose answer is diffed against the live object, then server-side applied
with field manager `meshstep`, never forced. A stage applies all of its objects or none: when object k is refused,
objects 1..k-1 are put back as they were (restored whole, or deleted when the stage created them). What the API
server refuses is said as it said it, with the code of meshstep's catalog: a conflict with another field manager
(MST1001, naming the managers and fields), an object changed since the gate read it (MST1002), RBAC (MST1003), an
admission webhook's denial (MST1004), an object the server finds invalid (MST1005)."""
from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from cluster.errors import MeshstepError
from cluster.kubeapi import ApiError, ApiServer, Failed, api_client
from cluster.kubectl_apply import merge_patch
from cluster.owners import ABSENT, FIELD_MANAGER, applied_by

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"  # RFC 7386: a null removes the field
# Set by the API server, never part of an applied configuration (a resourceVersion is added as a precondition).
_SERVER_SET = ("resourceVersion", "managedFields", "uid", "creationTimestamp", "generation", "selfLink")
Key = tuple[str, str, str | None, str]  # (apiVersion, kind, namespace, name)


def identity(obj: dict[str, Any]) -> Key:
    """(apiVersion, kind, namespace, name) of an object."""
    meta = obj.get("metadata") or {}
    return obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace"), meta.get("name", "")


def named(key: Key) -> str:
    """`VirtualService shop/reviews`, `Namespace legacy`."""
    _api, kind, ns, name = key
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def normalised(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """An object without what the API server sets on each write (resourceVersion, managedFields, uid, …) or
    reports (status): two objects equal after this hold the same configuration."""
    if obj is None:
        return None
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
    meta = out.get("metadata") or {}
    out["metadata"] = {k: v for k, v in meta.items() if k not in _SERVER_SET}
    return out


def fields(obj: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """Each field an object sets, by path, after `normalised`: maps field by field, lists whole (as server-side apply
    tracks fields of a custom resource whose schema declares no list type)."""
    def walk(node: dict[str, Any], prefix: tuple[str, ...]) -> Iterable[tuple[tuple[str, ...], Any]]:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                yield from walk(value, (*prefix, key))
            else:
                yield (*prefix, key), value
    return dict(walk(normalised(obj) or {}, ()))


def holds(live: dict[str, Any] | None, want: dict[str, Any] | None, other: dict[str, Any] | None) -> bool:
    """Whether the live object is `want` where `want` differs from `other` (what the cluster had instead; None when
    the object was absent, and every field of `want` counts): the fields a change sets, compared after
    normalisation, whoever applied it and whatever it added beside them (annotations of a GitOps tool). `want`
    None: the object must be gone."""
    if want is None or live is None:
        return want is None and live is None
    mine, have = fields(want), fields(live)
    theirs = fields(other) if other is not None else {}
    # A field set to null is one the change removes (a rollback's annotation): absent and null are the same here.
    changed = {p for p in mine.keys() | theirs.keys() if mine.get(p) != theirs.get(p)}
    return all(have.get(p) == mine.get(p) for p in (changed if other is not None else mine))


# What identifies an object in an applied configuration; and the annotations meshstep sets on what it applies (the
# plan and stage that applied it: planner/operate.py).
_IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}
_OWN_ANNOTATIONS = "meshstep.io/"


def intent(new: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any] | None:
    """The applied configuration meshstep sends for `new` (a whole object written over `live`): only the fields it
    has an opinion about, as server-side apply asks ("a fully specified intent",
    https://kubernetes.io/docs/reference/using-api/server-side-apply/), so that it never co-owns fields another
    manager owns with the same value. That is the identity, meshstep's annotations, the fields `new` changes
    relative to `live` (maps field by field, a list whole: Istio's CRDs declare their lists atomic) and the fields
    meshstep's Apply entry already owns (left out, the server removes them: one `new` drops is removed so). `new`
    whole (normalised) when the object is new; None when `live` shows no managedFields (an object no write since
    Kubernetes 1.18 touched, or read without them): nothing says what is whose."""
    if live is None:
        return normalised(new)
    if not (live.get("metadata") or {}).get("managedFields"):
        return None
    have, own = fields(live), applied_by(live)
    out: dict[str, Any] = {}
    for path, value in fields(new).items():
        notes = len(path) == 3 and path[:2] == ("metadata", "annotations") and path[2].startswith(_OWN_ANNOTATIONS)
        if path in _IDENTITY or notes or have.get(path, ABSENT) != value or any(path[:len(o)] == o for o in own):
            node = out
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = copy.deepcopy(value)
    return out


class ApplyRefused(MeshstepError):
    """The API server refused an object of the stage; `code` is the catalog's (MST10xx), `said` the server's
    message as it sent it, `rolled_back` the objects put back as they were before the stage."""

    exit_code = 1

    def __init__(self, code: str, key: Key, said: str, status: int | None,
                 dry_run: bool, detail: str = "", managers: tuple[str, ...] = (), fields: tuple[str, ...] = (),
                 deleting: bool = False):
        self.code, self.key, self.said, self.status, self.dry_run = code, key, said, status, dry_run
        self.detail, self.managers, self.fields, self.deleting = detail, managers, fields, deleting
        self.rolled_back: list[str] = []
        super().__init__(self.text())

    def text(self) -> str:
        when = ("the dry run of deleting" if self.dry_run else "deleting") if self.deleting else (
            "the server-side dry run of" if self.dry_run else "applying")
        lines = [f"{self.code}: {when} {named(self.key)} was refused: {self.said}"]
        if self.detail:
            lines.append(f"  {self.detail}")
        if self.rolled_back:
            lines.append(f"  put back as before the stage: {', '.join(self.rolled_back)}")
        elif self.dry_run:
            lines.append("  nothing was applied: every object of the stage is first tried as a dry run")
        return "\n".join(lines)

    def said_again(self) -> None:
        self.args = (self.text(),)


_CHANGED = "the stage goes back to its gate, which runs again on the cluster as it is now"


def _refusal(key: Key, dry_run: bool, deleting: bool = False
             ) -> Callable[[ApiError, str], Exception]:
    """How an answer that will not change is said: by what it means for the stage."""
    def refuse(e: ApiError, _what: str) -> Exception:
        if deleting and e.status == 404:
            return gone(key, dry_run)
        refused = _refused(key, dry_run, e)
        if deleting:
            refused.deleting = True
            refused.said_again()
        return refused
    return refuse


def gone(key: Key, dry_run: bool) -> ApplyRefused:
    """MST1002 for an object to delete that is not there: someone deleted it since the gate read the cluster."""
    return ApplyRefused("MST1002", key, "it was deleted since the gate read the cluster", 404, dry_run,
                        f"the object to delete is gone: {_CHANGED}", deleting=True)


def _refused(key: Key, dry_run: bool, e: ApiError) -> ApplyRefused:
    """The refusal an error answer means, by its status and causes."""
    said = e.message or str(e)
    causes = [c for c in e.details.get("causes") or () if isinstance(c, dict)]
    conflicts = [c for c in causes if c.get("reason") == "FieldManagerConflict"]
    if e.status == 409 and conflicts:
        managers = tuple(dict.fromkeys(_manager_of(c.get("message", "")) for c in conflicts))
        fields = tuple(str(c.get("field", "")) for c in conflicts)
        owned = "; ".join(f"{m} owns " + ", ".join(f for c, f in zip(conflicts, fields)
                                                    if _manager_of(c.get("message", "")) == m) for m in managers)
        return ApplyRefused("MST1001", key, said, 409, dry_run, f"{owned}: meshstep never forces another "
                            "manager's fields; change them there, or have that manager give them up, then "
                            "check the gate again", managers, fields)
    if e.status == 409:
        return ApplyRefused("MST1002", key, said, 409, dry_run, "the object changed since the gate read it: "
                            f"{_CHANGED}")
    if e.status == 403:
        return ApplyRefused("MST1003", key, said, 403, dry_run, "give meshstep's identity the verb on this "
                            "resource (a Role or ClusterRole bound to it), or apply the stage's YAML yourself")
    if "admission webhook" in said:
        return ApplyRefused("MST1004", key, said, e.status, dry_run, "the webhook's message says what it "
                            "refuses: fix the stage's parameters (or the webhook), then check the gate again")
    return ApplyRefused("MST1005", key, said, e.status, dry_run, "the API server does not accept the object "
                        "as rendered (strict field validation included)")


def _manager_of(message: str) -> str:
    """`conflict with "argocd-controller" using networking.istio.io/v1` → argocd-controller."""
    parts = message.split('"')
    return parts[1] if len(parts) > 2 else message


@dataclass(frozen=True)
class Resource:
    plural: str
    namespaced: bool


@dataclass
class Applied:
    """What a stage's apply did: per object, the live object before it (None: the stage created it), the diff of
    the dry run's answer against it, and the object as applied."""

    before: list[tuple[Key, dict[str, Any] | None]] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    after: list[dict[str, Any] | None] = field(default_factory=list)  # None: the stage deleted it


class Cluster:
    """One cluster as meshstep writes to it: its API server (retrying what may pass), and the resources of each
    group version as discovery lists them."""

    def __init__(self, api: Callable[[], ApiServer]):
        self.api_server = api  # a fresh ApiServer per operation: each one has the deadline of one read
        self._resources: dict[str, dict[str, Resource]] = {}

    @classmethod
    def connect(cls, context: str | None) -> Cluster:
        """The cluster of a kubeconfig context (the current one when None), as live reads reach it."""
        client, user = api_client(context)
        where = f"kubeconfig context {context!r}" if context else "the current kubeconfig context"
        return cls(lambda: ApiServer(client, where, user))

    def resource(self, api_version: str, kind: str) -> Resource:
        """The plural and scope of a kind, from the group version's discovery document (as kubectl maps them)."""
        if api_version not in self._resources:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            doc = orjson.loads(self.api_server().get(path, [], f"discovering {api_version}"))
            self._resources[api_version] = {r["kind"]: Resource(r["name"], bool(r.get("namespaced")))
                                            for r in doc.get("resources") or () if "/" not in r.get("name", "/")}
        found = self._resources[api_version].get(kind)
        if found is None:
            raise MeshstepError(f"the cluster does not serve {kind} in {api_version}: install its CRD first")
        return found

    def path(self, key: Key) -> str:
        api_version, kind, ns, name = key
        res = self.resource(api_version, kind)
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        return f"{base}/namespaces/{ns}/{res.plural}/{name}" if res.namespaced and ns else f"{base}/{res.plural}/{name}"

    def read(self, key: Key) -> dict[str, Any] | None:
        """The live object, None when there is none."""
        try:
            return orjson.loads(self.api_server().get(self.path(key), [], f"reading {named(key)}"))
        except Failed as e:
            if e.status == 404:
                return None
            raise

    def proxied(self, namespace: str, pod: str, port: int, path: str) -> bytes:
        """A GET of `path` on a pod's port through the API server's proxy
        (https://kubernetes.io/docs/tasks/access-application-cluster/access-cluster-services/
        #manually-constructing-apiserver-proxy-urls, the `pods/proxy` subresource): istiod's debug endpoints, each
        replica's own, with the kubeconfig's credentials and no port-forward. One try, not retried as reads are: a
        debug endpoint that does not answer is the caller's to work around. Raises Failed (403 for RBAC on
        pods/proxy, 503 when the pod does not answer on the port …)."""
        return self.api_server().get_once(f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}",
                                          f"reading {path} of pod {namespace}/{pod}:{port}")

    def apply(self, obj: dict[str, Any], dry_run: bool, version: str | None = None) -> dict[str, Any]:
        """Server-side apply of `obj` as field manager meshstep, never forced; `version`: the resourceVersion the
        object must still have (a precondition the server checks). What `obj` removes (its nulls: a label a
        switch takes off) is no field server-side apply can remove for another manager, nor does an applied null
        remove one: it goes after, as a JSON merge patch (an update, as `kubectl label … key-` does) under the
        resourceVersion the apply left — on a dry run, under `version`, its answer folded into the apply's."""
        key = identity(obj)
        config, removed = _without_nulls(normalised(obj) or {})
        if version:
            config["metadata"]["resourceVersion"] = version
        query = [("fieldManager", FIELD_MANAGER), ("fieldValidation", "Strict")]
        query = [("dryRun", "All"), *query] if dry_run else query
        doing = "dry run of " if dry_run else ""
        answer = orjson.loads(self.api_server().request(
            "PATCH", self.path(key), query, f"{doing}server-side apply of {named(key)}", body=config,
            content_type=APPLY_PATCH, refuse=_refusal(key, dry_run)))
        if not removed:
            return answer
        at = version if dry_run else (answer.get("metadata") or {}).get("resourceVersion")
        patch = {**removed, "metadata": {**removed.get("metadata", {}), **({"resourceVersion": at} if at else {})}}
        after = orjson.loads(self.api_server().request(
            "PATCH", self.path(key), query, f"{doing}removing fields of {named(key)} (merge patch)", body=patch,
            content_type=MERGE_PATCH, refuse=_refusal(key, dry_run)))
        return merge_patch(answer, removed) if dry_run else after

    def delete(self, key: Key, version: str | None, dry_run: bool,
               what: str = "deleting") -> None:
        """DELETE `key` (`dryRun=All`: checked by the server, admission included, and nothing deleted), under the
        precondition that it still has resourceVersion `version` (DeleteOptions' preconditions)."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if version:
            options["preconditions"] = {"resourceVersion": version}
        self.api_server().request("DELETE", self.path(key), [("dryRun", "All")] if dry_run else [],
                                  f"{'dry run of ' if dry_run else ''}{what} {named(key)}", body=options,
                                  content_type="application/json", refuse=_refusal(key, dry_run, deleting=True))

    def create(self, obj: dict[str, Any]) -> None:
        """POST `obj` to its collection as field manager meshstep: refused (409) if someone created it first."""
        key = identity(obj)
        self.api_server().request("POST", self.path(key).rsplit("/", 1)[0], [("fieldManager", FIELD_MANAGER)],
                                  f"creating {named(key)} again (rollback)", body=obj,
                                  content_type="application/json", refuse=_refusal(key, False))

    def restore(self, key: Key, before: dict[str, Any] | None,
                now: dict[str, Any] | None) -> None:
        """Put an object back as it was before the stage: deleted if the stage created it; created again, without
        what the server set, if the stage deleted it; else replaced whole by what it was (fields other managers own
        included), under the precondition that nobody changed it since `now` (the object as the stage left it)."""
        version = ((now or {}).get("metadata") or {}).get("resourceVersion")
        if before is None:
            if now is not None:
                self.delete(key, version, dry_run=False, what="deleting (rollback)")
            return
        if now is None:
            self.create(normalised(before) or {})
            return
        put = copy.deepcopy(before)
        put.pop("status", None)
        put["metadata"]["resourceVersion"] = version
        self.api_server().request("PUT", self.path(key), [("fieldManager", FIELD_MANAGER)],
                                  f"restoring {named(key)} (rollback)", body=put,
                                  content_type="application/json", refuse=_refusal(key, False))


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """A unified diff of the live object and the dry run's answer (None: deleted), without what the server sets on
    each write."""
    def lines(obj: dict[str, Any] | None) -> list[str]:
        return yaml.safe_dump(normalised(obj), sort_keys=True).splitlines(keepends=True) if obj else []
    key = named(identity(after or before or {}))
    return "".join(difflib.unified_diff(lines(before), lines(after), f"{key} (live)",
                                        f"{key} ({'after apply' if after else 'deleted'})"))


def _without_nulls(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An applied configuration without its nulls, and a JSON merge patch of just them (empty: none)."""
    kept: dict[str, Any] = {}
    removed: dict[str, Any] = {}
    for k, v in config.items():
        if v is None:
            removed[k] = None
        elif isinstance(v, dict):
            kept[k], inner = _without_nulls(v)
            if inner:
                removed[k] = inner
        else:
            kept[k] = v
    return kept, removed


def apply_stage(cluster: Cluster, objects: Iterable[dict[str, Any]], versions: dict[str, str],
                progress: Callable[[str], None] = lambda _line: None, deletes: Iterable[Key] = ()) -> Applied:
    """Every object dry-run first, and every deletion (`deletes`: the keys of the objects the stage deletes) too;
    nothing is written when one is refused. Then the objects are applied in order, then deleted; when write k is
    refused, writes 1..k-1 are put back as they were (a deleted object created again) and the refusal says so.
    `versions`: the resourceVersion each object had when the gate read it (by `named` key; "": absent then), sent
    as a precondition of its apply or delete."""
    deletes = list(deletes)
    done = Applied()
    configs = []
    for obj in objects:
        key = identity(obj)
        live = cluster.read(key)
        _created_since(key, live, versions, dry_run=True)
        configs.append(_configuration(key, obj, live, progress))
        answer = cluster.apply(configs[-1], dry_run=True, version=versions.get(named(key)))
        done.before.append((key, live))
        done.diffs.append(diff(live, answer))
        progress(f"dry run: {named(key)} accepted")
    for key in deletes:
        live = cluster.read(key)
        if live is None:
            raise gone(key, dry_run=True)
        cluster.delete(key, versions.get(named(key)), dry_run=True)
        done.before.append((key, live))
        done.diffs.append(diff(live, None))
        progress(f"dry run: deleting {named(key)} accepted")
    for (key, _live), obj in zip(done.before, [*configs, *(None for _ in deletes)]):
        try:
            done.after.append(_write(cluster, key, obj, versions))
        except ApplyRefused as refused:
            refused.rolled_back = roll_back(cluster, done.before[:len(done.after)], done.after)
            refused.said_again()
            raise
        progress(f"applied: {named(key)} (field manager {FIELD_MANAGER})" if obj else f"deleted: {named(key)}")
    return done


def _configuration(key: Key, obj: dict[str, Any], live: dict[str, Any] | None,
                   progress: Callable[[str], None]) -> dict[str, Any]:
    """What meshstep applies of `obj`: its intent over `live`, or `obj` whole, said, where the live object shows no
    field owners."""
    sent = intent(obj, live)
    if sent is None:
        progress(f"{named(key)} shows no managedFields: sent whole, so meshstep shares every field it sends that "
                 "another client set")
        return normalised(obj) or {}
    return sent


def _write(cluster: Cluster, key: Key, obj: dict[str, Any] | None, versions: dict[str, str]
           ) -> dict[str, Any] | None:
    """`obj` applied, or (None) the object at `key` deleted, each under the gate's resourceVersion; what it left."""
    version = versions.get(named(key))
    if obj is None:
        cluster.delete(key, version, dry_run=False)
        return None
    if version == "":
        _created_since(key, cluster.read(key), versions, dry_run=False)
    return cluster.apply(obj, dry_run=False, version=version)


def _created_since(key: Key, live: dict[str, Any] | None, versions: dict[str, str],
                   dry_run: bool) -> None:
    """An object the gate saw absent that exists now was made by someone else since: applying would take it over."""
    if live is not None and versions.get(named(key)) == "":
        managers = sorted({e.get("manager", "?") for e in (live.get("metadata") or {}).get("managedFields") or ()})
        raise ApplyRefused("MST1002", key, f"it was created since the gate read the cluster (field managers: "
                           f"{', '.join(managers) or 'unknown'})", None, dry_run, _CHANGED)


def roll_back(cluster: Cluster, before: list[tuple[Key, dict[str, Any] | None]],
              after: list[dict[str, Any] | None]) -> list[str]:
    """Objects put back as they were, last written first (one the stage deleted, None in `after`, created again);
    the names of those put back. An object someone changed (or deleted, or created again) since the stage wrote it
    is left as it is, and said: putting it back would undo their change."""
    back = []
    for (key, was), applied in reversed(list(zip(before, after))):
        now = cluster.read(key)
        if normalised(now) != normalised(applied):
            managers = sorted({e.get("manager", "?") for e in ((now or {}).get("metadata") or {}).get(
                "managedFields") or ()} - {FIELD_MANAGER})
            what = ("was deleted" if now is None else "was created again" if applied is None else "changed")
            raise MeshstepError(f"{named(key)} {what} since meshstep {'deleted' if applied is None else 'applied'} "
                                f"it (field managers: {', '.join(managers) or 'unknown'}); it was not put back, so as "
                                f"not to undo that change (put back so far: {', '.join(back) or 'nothing'}). The "
                                "stage's rollback YAML (meshstep plan rollback) says what it was before the stage")
        cluster.restore(key, was, now)
        back.append(named(key))
    return back
