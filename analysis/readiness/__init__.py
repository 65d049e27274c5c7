"""Readiness checks: what will break when a stage turns a feature on, in the stage's scope (a namespace, or for
`mesh` every namespace that is or will be in the mesh). These run only in stage gates, never in `analyze`.

Their identity (code, name, level, gates, hint) comes from catalog.py; each check fills the hint in with the
names of the resources it blames.

One module per family of stages (injection, routing, mtls, authz, egress, components); scope.py holds what they
share. All register under the family `readiness`."""
# Importing each family module registers its checks.
from analysis.readiness import authz, components, egress, injection, mtls, routing  # noqa: F401
