"""Facts from istio.io's supported-releases page, written as data (meshstep makes no network call for them).

Source: https://istio.io/latest/docs/releases/supported-releases/ ("Control Plane/Data Plane Skew"): "The Istio
control plane can be one version ahead of the data plane. However, the data plane cannot be ahead of control plane.
We recommend using revisions so that there is no skew at all." The same page's support policy: a minor release is
supported until 6 weeks after the N+2 minor release."""
from __future__ import annotations

from cluster.versions import release

SOURCE = "https://istio.io/latest/docs/releases/supported-releases/#control-planedata-plane-skew"
# Minor versions the control plane may be ahead of a proxy connected to it; a proxy ahead of it is never supported.
CONTROL_PLANE_AHEAD_MAX = 1
DATA_PLANE_AHEAD_MAX = 0


def skew_problem(proxy: tuple[int, int], control_plane: tuple[int, int]) -> str | None:
    """Why a proxy at minor version `proxy` is unsupported with an istiod at `control_plane`, else None."""
    if proxy[0] != control_plane[0]:
        return "a different major version"
    ahead = control_plane[1] - proxy[1]
    if ahead > CONTROL_PLANE_AHEAD_MAX:
        return f"istiod is {ahead} minor versions ahead (at most {CONTROL_PLANE_AHEAD_MAX} is supported)"
    if -ahead > DATA_PLANE_AHEAD_MAX:
        return "the proxy is ahead of its istiod (never supported)"
    return None


# istio.io's upgrade pages (https://istio.io/latest/docs/setup/upgrade/in-place/#upgrade-prerequisites): "The installed
# Istio version is no more than one minor version less than the upgrade version"; no istio.io page says a canary
# upgrade may skip a minor version, and the skew above (istiod at most one minor ahead of its proxies) is what every
# stage of a canary upgrade runs under until the old revision's proxies are restarted.
UPGRADE_SOURCE = "https://istio.io/latest/docs/setup/upgrade/in-place/#upgrade-prerequisites"
UPGRADE_MINORS_MAX = 1


def upgrade_problem(installed: str, to: str) -> str | None:
    """Why Istio `installed` cannot be upgraded to release `to` in one canary upgrade, else None."""
    old, new = release(installed), release(to)
    if new is None:
        return f"{to!r} is not an Istio release version (x.y.z, e.g. 1.28.0)"
    if old is None:
        return None  # a build whose version is not a release: nothing to compare it with
    if new == old:
        return f"Istio {installed} is the version installed already"
    if new < old:
        return f"{to} is older than the installed {installed}: that is a downgrade, not an upgrade"
    if new[0] != old[0]:
        return f"{to} is another major version than the installed {installed}"
    if new[1] - old[1] > UPGRADE_MINORS_MAX:
        between = f"{old[0]}.{old[1] + 1}"
        return (f"{to} is {new[1] - old[1]} minor versions ahead of the installed {installed}: Istio supports "
                f"upgrading by at most {UPGRADE_MINORS_MAX} minor version at a time ({UPGRADE_SOURCE}); upgrade to "
                f"the latest {between}.x first")
    return None


# The same page's "Support status of Istio releases" table: the Kubernetes minor versions each Istio minor release
# supports (its "Supported Kubernetes Versions" column), oldest and newest.
KUBERNETES_SOURCE = "https://istio.io/latest/docs/releases/supported-releases/#support-status-of-istio-releases"
KUBERNETES: dict[tuple[int, int], tuple[tuple[int, int], tuple[int, int]]] = {
    (1, 20): ((1, 25), (1, 29)),
    (1, 21): ((1, 26), (1, 29)),
    (1, 22): ((1, 27), (1, 30)),
    (1, 23): ((1, 27), (1, 30)),
    (1, 24): ((1, 28), (1, 31)),
    (1, 25): ((1, 29), (1, 32)),
    (1, 26): ((1, 29), (1, 33)),
    (1, 27): ((1, 29), (1, 33)),
    # 1.29 as 1.28.0's release announcement says (istio.io/latest/news/releases/1.28.x/announcing-1.28/), where a
    # copy of the table says 1.30: the wider range, so that a supported cluster is not refused.
    (1, 28): ((1, 29), (1, 34)),
    (1, 29): ((1, 31), (1, 35)),
}

