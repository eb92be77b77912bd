"""Celery workers: fine-tuning, compression, evaluation, gated promotion and indexing as jobs.

``app`` (the Celery app and beat's schedule), ``tasks`` (one task per job kind),
``client`` (submit jobs and read their state, by task name: no models needed),
``compression`` (built once per set of inputs, under a Redis lock), ``cli`` (``shoprank
worker|beat|jobs``).
"""
