"""Parameters as the CLI (`--set k=v`, text) and the flags store and app (JSON-read values) give them."""
from __future__ import annotations

import pytest

from cluster.errors import MeshstepError
from features.base import Param, registry, validate_params

ATTEMPTS = Param("attempts", int, 3, "retry attempts", minimum=0, maximum=10)
SAMPLING = Param("sampling", float, 1.0, "percent", minimum=0, maximum=100)
REQUIRE = Param("require", bool, True, "deny without a token")
HEADER = Param("header_value", str, "true", "its value")


@pytest.mark.parametrize("param, raw, value", [
    (ATTEMPTS, "4", 4), (ATTEMPTS, 4, 4), (ATTEMPTS, 4.0, 4),
    (SAMPLING, "0.5", 0.5), (SAMPLING, 2, 2.0),
    (REQUIRE, "false", False), (REQUIRE, "yes", True), (REQUIRE, False, False),
    (HEADER, "yes", "yes"), (HEADER, True, "true"), (HEADER, 10, "10"),  # JSON-read: the text as written
])
def test_values_are_read_as_written(param, raw, value):
    got = param.parse("f", raw)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("param, raw, says", [
    (ATTEMPTS, "2.5", "not a valid int"),
    (ATTEMPTS, 2.5, "not a valid int"),  # not silently 2
    (ATTEMPTS, True, "not a valid int"),  # not silently 1
    (ATTEMPTS, 11, "between 0 and 10"),
    (SAMPLING, "lots", "not a valid float"),
    (REQUIRE, 5, "not a valid bool"),  # not silently True
    (REQUIRE, "maybe", "not a valid bool"),
    (HEADER, ["a"], "not a valid str"),
])
def test_bad_values_are_refused_with_the_parameter_named(param, raw, says):
    with pytest.raises(MeshstepError, match=f"{param.name}=.*{says}"):
        param.parse("f", raw)


def test_unknown_keys_name_the_known_ones():
    with pytest.raises(MeshstepError, match="unknown parameter.*wieght.*it takes: service, strategy"):
        validate_params(registry()["traffic-shifting"], {"wieght": 10})


def test_every_default_is_valid():
    """A feature's defaults must pass its own checks (else rendering it with no --set can never work)."""
    for f in registry().values():
        assert validate_params(f, {p.name: p.default for p in f.params}) == f.defaults(), f.id


@pytest.mark.parametrize("feature, scope, says", [
    ("local-rate-limit", "default", "no service in default with pods and an HTTP port"),
    ("traffic-shifting", "payments", "no service in payments has pods with two `version` labels"),
    ("circuit-breaking", "default", "circuit-breaking: no service with pods in default"),
    ("timeouts-retries", "default", "timeouts-retries: no HTTP service with pods in default"),
])
def test_what_a_scope_lacks_is_said_plainly(feature, scope, says, demo_inventory):
    with pytest.raises(MeshstepError) as e:
        registry()[feature].render({}, scope, demo_inventory)
    assert says in str(e.value)


@pytest.mark.parametrize("feature, key, ok", [
    ("timeouts-retries", "timeout", "1.5s"), ("timeouts-retries", "per_try_timeout", "500ms"),
    ("circuit-breaking", "interval", "1m"), ("circuit-breaking", "base_ejection_time", "2h"),
    ("local-rate-limit", "interval", "10s"), ("egress-service-entry", "timeout", "30s"),
    ("fault-injection", "delay", ""),  # no delay at all
])
def test_durations_are_checked_before_anything_is_rendered(feature, key, ok):
    feat = registry()[feature]
    assert validate_params(feat, {key: ok})[key] == ok
    with pytest.raises(MeshstepError, match=rf"^{feature}: {key}='ten' is not valid \(.*a duration"):
        validate_params(feat, {key: "ten"})
