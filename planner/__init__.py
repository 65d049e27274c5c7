"""The plan engine: templates that turn a cluster into stages, the stage lifecycle, gates and exit checks, the
rehearsal overlay, export, promotion across clusters and the fleet. It orders features; storage is `state`'s."""
