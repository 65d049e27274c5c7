"""Traffic evidence from Istio's own metrics: who calls whom, in mTLS or plaintext, how well, and the before/after
verdict of a stage. Bottom to top: series (the metrics, windows, the Telemetry protocol) → prometheus (HTTP API
transport) and metrics_file (text-format parsing) → edges (observed calls) → verification (a stage judged by
traffic) → evidence (what a command is given). Reads clusters only through `cluster`."""
