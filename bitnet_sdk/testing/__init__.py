"""Helpers for tests, demos and benchmarks (not used by the runtime).

:mod:`bitnet_sdk.testing.synthetic` writes small, valid BitNet b1.58 GGUF files
(every supported format and architecture) and damaged copies of them.
"""
