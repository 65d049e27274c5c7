"""Checks of a cluster's Istio config and readiness: istioctl's IST messages and meshstep's MST codes, their one
catalog, and the runner that runs them over an inventory (and traffic evidence, where given)."""
