"""Each audit event records how its actor is known: verified (an Actor with its OpenID issuer and subject) or
self-declared (a plain name: the CLI's --actor, MESHSTEP_ACTOR, the OS user); the record is under the chain's
HMAC, so a database writer who promotes a self-declared event to verified is caught."""
from __future__ import annotations

import json

from sqlalchemy import text

from state import audit
from state.actors import Actor

ISSUER = "https://idp.example.com"


def test_a_verified_and_a_self_declared_change_are_recorded_as_such(store) -> None:
    olivia = Actor("olivia@example.com", issuer=ISSUER, subject="u-123", email="olivia@example.com")
    store.set_flag("demo", "tracing", "mesh", {"sampling": 1.0}, "on", olivia, "see calls")
    store.unset_flag("demo", "tracing", "mesh", "bob", "too noisy")
    *_, set_, unset = store.audit_events()
    assert (set_.actor, set_.identity) == ("olivia@example.com", {"verified": True, "issuer": ISSUER,
                                                                  "subject": "u-123", "email": "olivia@example.com"})
    assert (unset.actor, unset.identity) == ("bob", {"verified": False, "how": "self-declared"})
    assert audit.verify(store) is None


def test_an_identity_forged_in_the_database_breaks_the_chain(store) -> None:
    store.set_flag("demo", "tracing", "mesh", {"sampling": 1.0}, "on", "mallory", "see calls")
    seq = store.audit_events()[-1].seq
    forged = json.dumps({"verified": True, "issuer": ISSUER, "subject": "u-123", "email": "olivia@example.com"})
    with store.engine.begin() as c:
        c.execute(text("UPDATE audit_events SET identity = :i WHERE seq = :s"), {"i": forged, "s": seq})
    assert str(audit.verify(store)) == f"event {seq} was altered"


def test_the_same_person_is_known_by_issuer_and_subject_when_verified() -> None:
    olivia = Actor("olivia@example.com", issuer=ISSUER, subject="u-123", email="olivia@example.com")
    renamed = {"verified": True, "issuer": ISSUER, "subject": "u-123", "email": "o.smith@example.com"}
    assert olivia.same_person("o.smith@example.com", renamed)
    assert not olivia.same_person("olivia@example.com", {**renamed, "subject": "u-999"})
    # A self-declared record has only its name to go by.
    assert olivia.same_person("olivia@example.com", {"verified": False, "how": "self-declared"})
    assert Actor("bob").same_person("bob", None) and not Actor("bob").verified
