"""shoprank's ranking side: models, retrieval pipeline, training, evaluation, HTTP API."""

__version__ = "0.1.0"
