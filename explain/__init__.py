"""Explanations for people: what each Istio component of *this* cluster is, whom it talks to, what breaks when it
is down and how to debug it, and the communication graph."""
