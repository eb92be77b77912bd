"""The APIs of other services, served on our models so that their clients work unchanged.

One routes module and one shapes module per service: Cohere (``/v1/rerank``, ``/v2/rerank``,
``/v1/embed``, ``/v2/embed``), OpenAI (``/v1/embeddings``, ``/v1/models``), and
text-embeddings-inference with Infinity's rerank (``/rerank``, ``/embed``, ``/``, ``/info``,
``/health``, ``/tokenize``). Errors keep shoprank's ``{error, error_type}`` body, and every
scored answer names the version that scored it (``x-model-version``, ``x-embedder-version``).
"""
