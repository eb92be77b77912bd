"""Offline model compression: distillation, ONNX export, quantization, their parity checks,
and the compression job's steps (see ``ranker.compress.job``).

Serving never imports this package; it only loads the directories it registers.
"""
