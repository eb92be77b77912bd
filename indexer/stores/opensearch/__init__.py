"""OpenSearch as shoprank's distributed store: index design, bulk jobs, k-NN and BM25 search."""
