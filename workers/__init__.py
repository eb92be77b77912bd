"""Celery workers for fine-tuning, distillation and re-compression (see the workers issue)."""
