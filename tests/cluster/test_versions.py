"""Version strings as Istio and Kubernetes write them, parsed once (cluster.versions): Istio releases and image tags,
kubelets' versions, and what is not a version."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster.versions import Version, minor, parse, release


@pytest.mark.parametrize("text,parsed,minor_,release_", [
    ("1.28.0", Version(1, 28, 0, False, ""), (1, 28), (1, 28, 0)),
    ("1.27.10", Version(1, 27, 10, False, ""), (1, 27), (1, 27, 10)),
    ("1.28", Version(1, 28, None, False, ""), (1, 28), None),  # a minor release, no patch: not a release version
    ("1.28.0-rc.1", Version(1, 28, 0, False, "-rc.1"), (1, 28), None),  # a pre-release
    ("1.29-alpha.5f8d0c0e", Version(1, 29, None, False, "-alpha.5f8d0c0e"), (1, 29), None),  # a dev build's tag
    ("v1.33.5", Version(1, 33, 5, True, ""), (1, 33), None),  # a kubelet's: Istio writes no `v`
    ("v1.29.3-eks-abc", Version(1, 29, 3, True, "-eks-abc"), (1, 29), None),
    ("v1.30.5-gke.1014001", Version(1, 30, 5, True, "-gke.1014001"), (1, 30), None),
    ("v1.33.5+k3s1", Version(1, 33, 5, True, "+k3s1"), (1, 33), None),
    ("1.28.0.1", Version(1, 28, 0, False, ".1"), (1, 28), None),  # more parts than a release has
    ("01.028.00", Version(1, 28, 0, False, ""), (1, 28), (1, 28, 0)),
])
def test_versions_as_istio_and_kubernetes_write_them(text, parsed, minor_, release_):
    assert (parse(text), minor(text), release(text)) == (parsed, minor_, release_)


@pytest.mark.parametrize("text", [
    "", "latest", "1", "1.", "1.x", "x.1", "1.28x", "v", "v1", "vv1.28", "V1.28", "1-28", "1..28", ".1.28",
    "-1.28", "1.-28", "+1.28", " 1.28", "1.28 ", "1_0.28", "1.2_8", "\u0661.\u0662", "\u00b2.1.0", "sha256:abc",
])
def test_what_is_not_a_version_is_none(text):
    assert (parse(text), minor(text)) == (None, None)
    assert release(text) is None


def test_no_version_is_none():
    assert parse(None) is None and minor(None) is None


_numbers = st.integers(min_value=0, max_value=10**6)
# what a build writes after the version: a pre-release, a distribution's build, more parts
_suffixes = st.builds(str.__add__, st.sampled_from("-+."), st.text(max_size=12))


@given(_numbers, _numbers, _numbers)
def test_a_release_version_is_its_three_numbers(major, minor_, patch):
    text = f"{major}.{minor_}.{patch}"
    assert release(text) == (major, minor_, patch)
    assert minor(text) == (major, minor_)


@given(st.booleans(), _numbers, _numbers, st.one_of(st.none(), _numbers), _suffixes)
def test_a_minor_is_read_whatever_follows_it(v, major, minor_, patch, suffix):
    text = f"{'v' * v}{major}.{minor_}{'' if patch is None else f'.{patch}'}{suffix}"
    assert minor(text) == (major, minor_)
    assert release(text) is None  # a suffix (or a `v`) makes it no release version


@given(st.text(max_size=20))
def test_release_and_minor_agree(text):
    r, m = release(text), minor(text)
    assert r is None or m == r[:2]
    assert (m is None) is (parse(text) is None)


@given(st.text(max_size=20).filter(lambda t: not t[:1].isascii() or not (t[:1].isdigit() or t[:1] == "v")))
def test_a_version_starts_with_a_digit_or_v(text):
    assert parse(text) is None and minor(text) is None and release(text) is None
