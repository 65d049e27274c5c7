"""Traffic evidence from Istio's own metrics: who calls whom, in mTLS or plaintext, how well, and the before/after
verdict of a stage. Reads clusters only through `cluster`."""
