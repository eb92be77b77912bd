"""Stores behind small protocols: vectors (FAISS, OpenSearch), BM25 and product documents."""
