"""Shared fixtures: tiny random BERT models on MiniLM's tokenizer, and a catalog subset."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_BERT: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}


def make_tiny_model(directory: Path, *, scoring: bool) -> Path:
    """A randomly initialised 2-layer BERT with MiniLM's vocabulary, saved like ours."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from ranker.model_files import base_model_dir
    from ranker.training.artifacts import TOKENIZER_FILES

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, **{**TINY_BERT, "num_labels": 1})
    model = BertForSequenceClassification(config) if scoring else BertModel(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    for name in TOKENIZER_FILES:
        source = base_model_dir() / name
        if source.is_file():
            shutil.copy2(source, directory / name)
    return directory


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny bi-encoder directory (random weights)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-embedder"), scoring=False)


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cross-encoder directory (random weights)."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-reranker"), scoring=True)
