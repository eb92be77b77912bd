"""Offline model compression: ONNX export, quantization, and their parity checks.

Serving never imports this package; it only loads the directories it writes.
"""
