"""Registries list their members or fail loudly: a check family module that registers nothing, a module nobody
listed, a feature module without FEATURE; and codes raised outside a check take their hint from the catalog."""
from __future__ import annotations

from pathlib import Path

import pytest

import features
from analysis import base
from analysis.catalog import CATALOG
from cluster.inventory import build_inventory
from cluster.model import Ref
from cluster.sources import load_snapshot
from features import base as features_base
from planner.plan import install_messages


def test_a_family_module_that_registers_no_check_is_an_error(monkeypatch):
    monkeypatch.setattr(base, "MODULES", (*base.MODULES, "catalog"))
    monkeypatch.setattr(base, "SUPPORT_MODULES", tuple(m for m in base.SUPPORT_MODULES if m != "catalog"))
    with pytest.raises(RuntimeError, match="catalog register no check"):
        base.registry()


def test_a_module_of_the_package_nobody_listed_is_an_error(monkeypatch):
    monkeypatch.setattr(base, "SUPPORT_MODULES", tuple(m for m in base.SUPPORT_MODULES if m != "istio_messages"))
    with pytest.raises(RuntimeError, match="istio_messages not listed"):
        base.registry()


def test_a_feature_module_without_feature_is_an_error(tmp_path: Path, monkeypatch):
    (tmp_path / "half_written.py").write_text('"""A feature someone forgot to finish."""\n')
    monkeypatch.setattr(features, "__path__", [*features.__path__, str(tmp_path)])
    with pytest.raises(RuntimeError, match="half_written.py defines no FEATURE"):
        features_base.registry.__wrapped__()


def test_codes_raised_outside_checks_read_their_level_and_hint_from_the_catalog():
    m = base.catalog_message("MST0002", Ref("Namespace", None, "istio-system"), "istiod revision x: none ready",
                             namespace="istio-system")
    assert m.level == CATALOG["MST0002"].level
    assert m.hint == CATALOG["MST0002"].hint.format(namespace="istio-system")
    inv = build_inventory(load_snapshot("demo"))
    feature = features_base.get("authorization-policy")
    dependency = [m for m in feature.checks(inv, "legacy", feature.defaults()) if m.code == "MST0003"]
    assert dependency and all(m.hint == CATALOG["MST0003"].hint_for(dependency="mtls-strict", scope="legacy")
                              for m in dependency)
    assert install_messages(inv) == []  # the demo's istiod is ready
