"""Facts from istio.io's supported-releases page, written as data (meshstep makes no network call for them).

Source: https://istio.io/latest/docs/releases/supported-releases/ ("Control Plane/Data Plane Skew"): "The Istio
control plane can be one version ahead of the data plane. However, the data plane cannot be ahead of control plane.
We recommend using revisions so that there is no skew at all." The same page's support policy: a minor release is
supported until 6 weeks after the N+2 minor release."""
from __future__ import annotations

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
