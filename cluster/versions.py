"""Version strings, as Istio and Kubernetes write them: Istio's releases and image tags (`1.28.0`, `1.28.0-rc.1`)
and kubelets (`v1.33.5`, `v1.29.3-eks-abc`, `v1.33.5+k3s1`). One parser for every room that compares versions."""
from __future__ import annotations

import re
from dataclasses import dataclass

# An optional `v` (Kubernetes' way), major.minor, an optional .patch, then whatever a build adds after `-`, `+` or
# `.` (a pre-release, a distribution's build, more parts). ASCII digits only: int() would take `1_0`, ` 1`, `١`.
_VERSION = re.compile(r"(v?)([0-9]+)\.([0-9]+)(?:\.([0-9]+))?((?:[-+.].*)?)", re.DOTALL)


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int | None  # `1.28` has none
    prefixed: bool  # written `v1.28…`, as Kubernetes writes it
    suffix: str  # `-rc.1`, `-eks-abc`, `+k3s1`; "" for none


def parse(text: str | None) -> Version | None:
    """`v1.29.3-eks-abc` → Version(1, 29, 3, True, "-eks-abc"); None for anything that is not a version."""
    m = _VERSION.fullmatch(text or "")
    if m is None:
        return None
    prefix, major, minor, patch, suffix = m.groups()
    return Version(int(major), int(minor), int(patch) if patch is not None else None, bool(prefix), suffix)


def minor(text: str | None) -> tuple[int, int] | None:
    """`1.27.3`, `v1.27.3-eks-abc` or `1.27` → (1, 27); None for a version that is not one."""
    v = parse(text)
    return (v.major, v.minor) if v else None


def release(text: str) -> tuple[int, int, int] | None:
    """`1.28.0` → (1, 28, 0); None for anything that is not a release version x.y.z (no `v`, nothing after it)."""
    v = parse(text)
    if v is None or v.patch is None or v.prefixed or v.suffix:
        return None
    return v.major, v.minor, v.patch
