"""Who makes a change, and how meshstep knows it.

An `Actor` is the name recorded with a change (a `str`, as every writer has always taken one) that also carries
the identity behind it: verified by an OpenID provider (issuer, subject, email, as the app's sign-in read them from
the ID token) or self-declared (a name typed in the app without sign-in, `--actor`, `MESHSTEP_ACTOR`, the OS user).
Every audit event records which (`AuditEvent.identity`), under the chain's HMAC."""
from __future__ import annotations

from typing import Any

SELF_DECLARED = {"verified": False, "how": "self-declared"}


class Actor(str):
    """A name with the identity behind it; a plain `str` passed where an actor is taken is self-declared."""

    issuer: str | None
    subject: str | None
    email: str | None

    def __new__(cls, name: str, *, issuer: str | None = None, subject: str | None = None,
                email: str | None = None) -> Actor:
        self = super().__new__(cls, name)
        self.issuer, self.subject, self.email = issuer, subject, email
        return self

    @property
    def verified(self) -> bool:
        return bool(self.issuer and self.subject)

    def record(self) -> dict[str, Any]:
        """What the audit event keeps of the identity."""
        if not self.verified:
            return dict(SELF_DECLARED)
        return {"verified": True, "issuer": self.issuer, "subject": self.subject, "email": self.email}

    def same_person(self, other: str, other_identity: dict[str, Any] | None) -> bool:
        """Whether `other` (a recorded actor and the identity recorded with it) is this person: by issuer and
        subject when both are verified, else by name (all a self-declared record has)."""
        if self.verified and other_identity and other_identity.get("verified"):
            return (self.issuer, self.subject) == (other_identity.get("issuer"), other_identity.get("subject"))
        return str(self) == str(other)


def identity_of(actor: str) -> dict[str, Any]:
    """The identity to record for `actor`: its own when it is an Actor, self-declared for a plain name."""
    return actor.record() if isinstance(actor, Actor) else dict(SELF_DECLARED)


def how_known(identity: dict[str, Any] | None) -> str:
    """An event's identity in a few words, for tables: verified by whom, self-declared, or not recorded (an event
    written before meshstep recorded it)."""
    if identity is None:
        return "not recorded"
    if identity.get("verified"):
        return f"verified ({identity.get('issuer')}, subject {identity.get('subject')})"
    return "self-declared"
