"""shoprank's catalog side: product schema, loaders, text templates, stores and indexing jobs."""
