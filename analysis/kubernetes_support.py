"""Whether an Istio release supports the nodes' Kubernetes, from istio.io's supported releases table
(cluster.istio_releases.KUBERNETES), and what to say: one judgement for the install gates that ask it (MST0909 and
MST0910 for the release revision-install installs, MST0710 for the release ambient is installed on), nodes outside
the release's versions and what keeps them from being judged (the release not in the table, no node in the source,
nodes that report no kubelet version) alike."""
from __future__ import annotations

from dataclasses import dataclass

from analysis.catalog import Filled, fill
from cluster import istio_releases, platform
from cluster.inventory import Inventory
from cluster.model import Ref
from cluster.versions import minor

SOURCE = istio_releases.KUBERNETES_SOURCE


@dataclass(frozen=True)
class Outside:
    """Nodes on one Kubernetes version that Istio `istio` does not support (it supports `low` to `high`)."""

    nodes: tuple[Ref, ...]
    kubernetes: str  # the nodes' kubelet version
    istio: str
    low: str
    high: str

    @property
    def message(self) -> Filled:
        many = len(self.nodes) > 1
        return fill(f"node{'s' if many else ''} {{nodes}} run{'' if many else 's'} Kubernetes {{kubernetes}}; "
                    "Istio {istio} supports Kubernetes {low} to {high} ({source})",
                    nodes=", ".join(n.name for n in self.nodes), kubernetes=self.kubernetes, istio=self.istio,
                    low=self.low, high=self.high, source=SOURCE)


def _range(istio: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The oldest and newest Kubernetes minor Istio release `istio` supports; None when it is not in the table."""
    have = minor(istio)
    return istio_releases.KUBERNETES.get(have) if have else None


def supported(istio: str) -> str | None:
    """The Kubernetes versions Istio release `istio` supports (`1.29 to 1.33`); None when the release is not in the
    table (see `unknown`)."""
    versions = _range(istio)
    return None if versions is None else f"{_dotted(versions[0])} to {_dotted(versions[1])}"


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def outside(inv: Inventory, istio: str) -> list[Outside] | None:
    """The nodes whose Kubernetes Istio release `istio` does not support, one entry per kubelet version; None when
    the release is not in the table. Nodes that report no kubelet version are not judged (see `unknown`)."""
    if (versions := _range(istio)) is None:
        return None
    low, high = versions
    found: dict[str, list[Ref]] = {}
    for node in inv.of_kind("Node"):
        runs = platform.kubernetes_minor(node)
        if runs is not None and not low <= runs <= high:
            found.setdefault(platform.kubelet_version(node), []).append(node.ref)
    return [Outside(tuple(nodes), version, istio, _dotted(low), _dotted(high)) for version, nodes in found.items()]


def unknown(inv: Inventory, istio: str) -> tuple[Ref, Filled] | None:
    """Why whether Istio `istio` supports the nodes' Kubernetes is unknown, and what to blame: its minor release is
    not in the table (the root namespace), no node is in the source (the root namespace: a snapshot without Node
    objects cannot show the Kubernetes), or nodes report no kubelet version (the first of them); else None."""
    have = minor(istio)
    if have is None:
        return None
    if have not in istio_releases.KUBERNETES:
        known = sorted(istio_releases.KUBERNETES)
        versions = sorted({platform.kubelet_version(n) for n in inv.of_kind("Node")} - {""})
        return Ref("Namespace", None, inv.root_namespace), fill(
            f"Istio {{istio}} is {'newer' if have > known[-1] else 'older'} than the releases whose supported "
            f"Kubernetes versions meshstep knows ({_dotted(known[0])} to {_dotted(known[-1])}): "
            "whether it supports the nodes' Kubernetes ({versions}) is unknown",
            istio=istio, versions=", ".join(versions) or "not reported")
    if not inv.of_kind("Node"):
        return Ref("Namespace", None, inv.root_namespace), fill(
            "no node is in the source: whether Istio {istio} supports the cluster's Kubernetes is unknown",
            istio=istio)
    unreported = [n for n in inv.of_kind("Node") if platform.kubernetes_minor(n) is None]
    if not unreported:
        return None
    many = len(unreported) > 1
    return unreported[0].ref, fill(
        f"node{'s' * many} {{nodes}} report{'' if many else 's'} no kubelet version: whether Istio {{istio}} "
        f"supports {'their' if many else 'its'} Kubernetes is unknown",
        nodes=", ".join(n.name for n in unreported), istio=istio)
