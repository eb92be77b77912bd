"""The real client libraries, unchanged, against a real server on 127.0.0.1 (tiny models).

Each client is given only a base URL and a dummy key: cohere's ``Client`` and ``ClientV2``
(``base_url``), langchain-cohere's ``CohereRerank``, litellm's cohere and infinity providers
(``api_base``), openai's ``OpenAI`` (``base_url=.../v1``) and huggingface_hub's
``InferenceClient(base_url=...)``. The server is uvicorn in a thread serving the app on a
service of the tiny embedder and reranker (no index: these routes need none).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from ranker.api.app import create_app
from ranker.api.service import Service
from ranker.embedder import Embedder
from ranker.reranker import Reranker
from ranker.settings import Settings

pytestmark = pytest.mark.integration

KEY = "dummy-key"
QUERY = "adidas gym bag for women"
TEXTS = ["adidas duffel bag", "silicone caulk", "three ring binder", "water bottle"]
START_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def tiny_reranker(tiny_reranker_dir: Path) -> Reranker:
    return Reranker.load(tiny_reranker_dir, backend="torch")


@pytest.fixture(scope="module")
def base_url(
    tiny_embedder: Embedder, tiny_reranker: Reranker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of a uvicorn server in a thread; stopped after the module."""
    service = Service(embedder=tiny_embedder, reranker=tiny_reranker, pipeline=None, problems=[])
    settings = Settings(home=tmp_path_factory.mktemp("compat-home"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        create_app(settings, service=service), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="compat-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the uvicorn server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def expected(tiny_reranker: Reranker) -> list[float]:
    """The sigmoid scores of TEXTS for QUERY, straight from the reranker."""
    logits = tiny_reranker.score(QUERY, TEXTS).astype(np.float64)
    return list(1.0 / (1.0 + np.exp(-logits)))


def _best_first(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


# ----------------------------------------------------------------------------- cohere


def test_cohere_client_v1_rerank_with_objects_and_strings(
    base_url: str, expected: list[float], tiny_reranker_dir: Path
) -> None:
    import cohere

    client = cohere.Client(api_key=KEY, base_url=base_url)
    documents: list[Any] = [TEXTS[0], {"text": TEXTS[1], "sku": "s-1"}, *TEXTS[2:]]

    response = client.rerank(
        model="rerank-english-v3.0",
        query=QUERY,
        documents=documents,
        top_n=3,
        return_documents=True,
    )

    assert [r.index for r in response.results] == _best_first(expected)[:3]
    for result in response.results:
        assert result.relevance_score == pytest.approx(expected[result.index], abs=1e-6)
        assert result.document is not None
        assert result.document.text == TEXTS[result.index]
    assert response.meta is not None
    assert response.meta.api_version is not None
    assert response.meta.api_version.version == "1"
    assert getattr(response.meta, "model_version", None) == tiny_reranker_dir.name


def test_cohere_client_v2_rerank_and_embed(
    base_url: str, expected: list[float], tiny_embedder: Embedder
) -> None:
    import cohere

    client = cohere.ClientV2(api_key=KEY, base_url=base_url)

    rerank = client.rerank(model="rerank-v3.5", query=QUERY, documents=TEXTS, top_n=2)
    embed = client.embed(
        model="embed-english-v3.0",
        texts=TEXTS[:2],
        input_type="search_document",
        embedding_types=["float"],
    )

    assert [r.index for r in rerank.results] == _best_first(expected)[:2]
    assert rerank.meta is not None
    assert rerank.meta.billed_units is not None
    assert rerank.meta.billed_units.search_units == 1
    assert embed.embeddings.float_ is not None
    np.testing.assert_allclose(embed.embeddings.float_, tiny_embedder.embed(TEXTS[:2]), atol=1e-5)


def test_cohere_client_v1_embed_floats(base_url: str, tiny_embedder: Embedder) -> None:
    import cohere

    client = cohere.Client(api_key=KEY, base_url=base_url)

    response = client.embed(texts=TEXTS, model="embed-english-v3.0", input_type="search_query")

    assert response.response_type == "embeddings_floats"
    np.testing.assert_allclose(response.embeddings, tiny_embedder.embed(TEXTS), atol=1e-5)


def test_langchain_cohere_rerank(base_url: str, expected: list[float]) -> None:
    from langchain_cohere import CohereRerank
    from langchain_core.documents import Document

    reranker = CohereRerank(cohere_api_key=KEY, base_url=base_url, model="rerank-v3.5", top_n=2)

    kept = reranker.compress_documents([Document(page_content=t) for t in TEXTS], QUERY)

    best = _best_first(expected)[:2]
    assert [d.page_content for d in kept] == [TEXTS[i] for i in best]
    scores = [d.metadata["relevance_score"] for d in kept]
    assert scores == pytest.approx([expected[i] for i in best], abs=1e-6)


# ----------------------------------------------------------------------------- litellm


@pytest.fixture(scope="module")
def litellm_module() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost map download
    import litellm

    return litellm


@pytest.mark.parametrize("suffix", ["", "/v1/rerank"])
def test_litellm_cohere_rerank(
    litellm_module: Any, base_url: str, expected: list[float], suffix: str
) -> None:
    response = litellm_module.rerank(
        model="cohere/rerank-english-v3.0",
        query=QUERY,
        documents=TEXTS,
        top_n=3,
        api_base=base_url + suffix,
        api_key=KEY,
    )

    results = response.results
    assert [r["index"] for r in results] == _best_first(expected)[:3]
    assert all(r["document"]["text"] == TEXTS[r["index"]] for r in results)


def test_litellm_infinity_rerank(litellm_module: Any, base_url: str, expected: list[float]) -> None:
    response = litellm_module.rerank(
        model="infinity/tiny-reranker",
        query=QUERY,
        documents=TEXTS,
        top_n=2,
        api_base=base_url,
        api_key=KEY,
    )

    results = response.results
    assert [r["index"] for r in results] == _best_first(expected)[:2]
    assert [r["relevance_score"] for r in results] == pytest.approx(
        [expected[i] for i in _best_first(expected)[:2]], abs=1e-6
    )


# ----------------------------------------------------------------------------- openai


def test_openai_embeddings_in_base64_and_float(
    base_url: str, tiny_embedder: Embedder, tiny_embedder_dir: Path
) -> None:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=f"{base_url}/v1")

    default = client.embeddings.create(model="text-embedding-3-small", input=TEXTS)  # base64
    floats = client.embeddings.create(model="x", input=TEXTS[0], encoding_format="float")
    models = client.models.list()

    vectors = tiny_embedder.embed(TEXTS)
    np.testing.assert_allclose([d.embedding for d in default.data], vectors, atol=1e-6)
    np.testing.assert_allclose(floats.data[0].embedding, vectors[0], atol=1e-6)
    assert default.model == tiny_embedder_dir.name
    assert default.usage.prompt_tokens > len(TEXTS)
    assert {m.id for m in models.data} >= {tiny_embedder_dir.name}


def test_openai_token_arrays_are_a_clear_4xx(base_url: str) -> None:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=f"{base_url}/v1", max_retries=0)

    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.embeddings.create(model="x", input=[[101, 2054, 102]])

    assert refused.value.type == "validation"
    assert isinstance(refused.value.body, dict)
    assert "token-id arrays are not accepted" in refused.value.body["message"]


# ----------------------------------------------------------------------------- TEI


def test_inference_client_feature_extraction_posts_to_the_root(
    base_url: str, tiny_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import InferenceClient, constants

    # HF_HUB_OFFLINE blocks every request huggingface_hub makes, even to 127.0.0.1; lift it
    # for this test only (the client talks to the local server, never to the Hub).
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    client = InferenceClient(base_url=base_url, api_key=KEY)
    long_text = "waterproof hiking boots " * 60

    vector = client.feature_extraction(TEXTS[0])
    cut = client.feature_extraction(long_text, truncate=True, truncation_direction="left")

    np.testing.assert_allclose(vector, tiny_embedder.embed(TEXTS[:1]), atol=1e-5)
    assert cut.shape == (1, tiny_embedder.dimension)


def test_tei_info_health_and_tokenize(base_url: str, tiny_embedder_dir: Path) -> None:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        info = client.get("/info").json()
        health = client.get("/health")
        tokens = client.post("/tokenize", json={"inputs": "adidas bag"}).json()
        too_long = client.post("/embed", json={"inputs": "boots " * 200})

    assert info["model_id"] == tiny_embedder_dir.name
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] > 0
    assert health.status_code == 200
    assert health.content == b""
    first, *words, last = tokens[0]
    assert first == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert last["special"] is True
    assert "".join(t["text"] for t in words) == "adidasbag"
    assert words[0]["start"] == 0
    assert words[-1]["stop"] == len("adidas bag")
    assert too_long.status_code == 413  # TEI's truncate defaults to false
    assert too_long.json()["error_type"] == "too_large"
