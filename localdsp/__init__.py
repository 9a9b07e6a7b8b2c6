"""localdsp: a local stand-in for the DSP v1 (kfp-tekton 1.5.x) API server.

`localdsp.server.LocalDSP` runs it in-process; `python -m localdsp` runs it from a shell. See
docs/localdsp.md. Nothing is imported here, so that `localdsp.tekton` (the executor) stays light.
"""
