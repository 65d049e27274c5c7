"""A source's objects as meshstep takes them in: the Snapshot (produced lazily, with what the source could not
show), the raw pages a consumer decodes itself, what is never kept of an object (a Secret's values, managed fields),
and the bounds any source is read within."""
from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import SourceError
from cluster.owners import keeps_ownership, slimmed

# A secret's values are never kept, whatever the source gives. What a check needs to know of a TLS credential is
# kept instead, under CREDENTIAL (see credential_facts): which keys it has, and its certificate's validity.
_SECRET_VALUE_KEYS = ("data", "stringData")
CREDENTIAL = "_meshstep_credential"
# The key pairs Istio's gateways read a credential from: a kubernetes.io/tls Secret's, or a generic Secret's.
CREDENTIAL_KEYS = (("tls.crt", "tls.key"), ("cert", "key"))


@dataclass(frozen=True)
class Limit:
    """A bound on what one snapshot may make meshstep read or build, settable through its environment variable:
    a hostile or broken file (a gzip of gigabytes of spaces, a YAML alias bomb, /dev/zero) must end in an error
    that says which bound it hit, not in an exhausted machine."""

    env: str
    default: int
    what: str  # "a snapshot file may hold", in "larger than the 256 MiB a snapshot file may hold"
    unit: str = "MiB"

    @property
    def value(self) -> int:
        raw = os.environ.get(self.env)
        try:
            return int(raw) if raw else self.default
        except ValueError:
            raise SourceError(f"{self.env}={raw!r} is not a whole number") from None

    @property
    def bytes(self) -> int:
        return self.value * (1 << 20) if self.unit == "MiB" else self.value

    def exceeded(self, where: str, what: str) -> SourceError:
        return SourceError(f"{where}: {what}, more than the {self.value:,} {self.unit} {self.what} "
                           f"(raise it with {self.env}=N if the snapshot is genuine)")


FILE_LIMIT = Limit("MESHSTEP_MAX_FILE_MB", 256, "a snapshot file or archive member may hold")


@dataclass(frozen=True)
class Kind:
    """A listable resource: `path` is the collection URL; `label` how visibility reports name it."""

    label: str
    path: str
    kind: str
    api_version: str
    label_selector: str | None = None
    metadata_only: bool = False


POD_KIND = Kind("pods", "/api/v1/pods", "Pod", "v1")


class Raw:
    """Objects of one kind still as the source gave them (JSON), for the consumer to decode as it needs: as dicts
    (parse) or, for pods, typed (pods)."""

    kind: Kind

    def parse(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def pods(self) -> list[Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class NotVisible:
    """A kind the source could not read, and why, as the API server said it."""

    kind: str  # VirtualService
    resource: str  # virtualservices.networking.istio.io, as `kubectl auth can-i list` names it
    reason: str  # e.g. "403 Forbidden: virtualservices.networking.istio.io is forbidden: User ..."
    forbidden: bool = False  # refused (403), rather than unavailable

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "resource": self.resource, "reason": self.reason}


@dataclass
class Visibility:
    """What the source could not show: kinds it could not read (refused, or their API unavailable), and what is
    not installed (a live source says so from discovery; the inventory from the CRDs of a whole-cluster source)."""

    not_visible: list[NotVisible] = field(default_factory=list)
    not_installed: list[str] = field(default_factory=list)
    discovered: bool = False  # not_installed is the server's word (discovery), not to be guessed from CRDs

    @property
    def forbidden(self) -> list[str]:
        """The resources the API refused to list (403)."""
        return [n.resource for n in self.not_visible if n.forbidden]

    def unreadable(self) -> dict[str, NotVisible]:
        """The kinds that could not be read, by kind name."""
        return {n.kind: n for n in self.not_visible}


@dataclass
class Snapshot:
    """Raw objects of one source, produced lazily by `objects()` (a live cluster streams page by page)."""

    label: str
    produce: Callable[[Visibility], Iterable[dict[str, Any] | Raw]]
    visibility: Visibility = field(default_factory=Visibility)
    # Whether the source is a whole cluster (live, demo) rather than a set of manifests.
    cluster: bool = True

    def objects(self) -> Iterator[dict[str, Any]]:
        """Every object, as a dict."""
        return self.stream()  # type: ignore[return-value]  (no raw kinds: dicts only)

    def stream(self, raw_kinds: Collection[str] = ()) -> Iterator[dict[str, Any] | Raw]:
        """Every object as a dict, except that a live list's pages of `raw_kinds` (e.g. "Pod") come as RawPages, and
        a JSON snapshot's as RawPods, for the consumer to decode typed (the inventory decodes pods straight into
        Structs)."""
        for item in self.produce(self.visibility):
            if isinstance(item, Raw):
                if item.kind.kind in raw_kinds:
                    yield item
                    continue
                for obj in item.parse():
                    yield trimmed(obj)
            else:
                yield trimmed(item)


def trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what meshstep never keeps: a Secret's values (what a check needs of them is kept as
    credential facts), and the API server's field-ownership record (metadata.managedFields: kilobytes an object on
    a live cluster) but for the kinds a feature changes, slimmed (cluster.owners: a stage's gate names who owns what
    it would change); a pod's typed decoding skips it already."""
    meta = obj.get("metadata")
    if type(meta) is dict and "managedFields" in meta:
        entries = meta.pop("managedFields")
        if keeps_ownership(obj) and (kept := slimmed(entries)):
            meta["managedFields"] = kept
    if obj.get("kind") == "Secret":
        if any(obj.get(k) for k in _SECRET_VALUE_KEYS):
            obj[CREDENTIAL] = credential_facts(obj.get("data") or {}, obj.get("stringData") or {})
        for k in _SECRET_VALUE_KEYS:
            obj.pop(k, None)
    return obj


def credential_facts(data: dict[str, Any], string_data: dict[str, Any]) -> dict[str, Any]:
    """What can be said of a Secret as a TLS credential without keeping its values: its keys, and either the
    certificate's expiry (`not_after`, ISO 8601) or why it cannot serve (`problem`), as Istio's gateways read it."""
    import base64
    import binascii
    import warnings

    from cryptography import x509

    values: dict[str, bytes] = {}
    for k, v in data.items():
        try:
            values[k] = base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            values[k] = b""
    values.update({k: str(v).encode() for k, v in string_data.items()})
    facts: dict[str, Any] = {"keys": sorted(values)}
    pair = next((p for p in CREDENTIAL_KEYS if all(values.get(k) for k in p)), None)
    if pair is None:
        facts["problem"] = "it has neither tls.crt and tls.key nor cert and key"
        return facts
    try:
        with warnings.catch_warnings():  # e.g. a non-positive serial number: judged below, not worth a warning
            warnings.simplefilter("ignore")
            cert = x509.load_pem_x509_certificate(values[pair[0]])
    except ValueError:
        facts["problem"] = f"its {pair[0]} is not a PEM certificate"
        return facts
    facts["not_after"] = cert.not_valid_after_utc.isoformat()
    return facts

