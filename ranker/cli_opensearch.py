"""`shoprank opensearch`: set up OpenSearch's rerank hook (see deploy/opensearch/README.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from ranker.cli_common import fail, settings_with_flags

app = typer.Typer(
    help="OpenSearch: the rerank hook (see deploy/opensearch/README.md).", no_args_is_help=True
)


@app.command("setup-rerank")
def opensearch_setup_rerank(
    api_url: Annotated[
        str,
        typer.Option(
            "--api-url",
            help="shoprank's API as the OpenSearch nodes reach it, e.g. http://10.0.0.5:8000.",
        ),
    ],
    pipeline: Annotated[str, typer.Option(help="The search pipeline's name.")] = "shoprank-rerank",
    document_field: Annotated[
        list[str] | None,
        typer.Option(
            "--document-field",
            help="A _source field the reranker reads (repeatable; their values are "
            "concatenated); default: model_text, the text the models read.",
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="Connector and model name.")] = "shoprank-reranker",
) -> None:
    """Register an ML Commons connector to /v1/rerank, a model and a rerank search pipeline.

    Idempotent: a connector and model of this name on the same endpoint, and a pipeline
    that already holds the processor, are reused. With API keys set
    (SHOPRANK_API__API_KEYS), the connector sends the first one as 'Authorization: Bearer'.
    """
    from indexer.stores.base import StoreError
    from indexer.stores.opensearch.client import make_client
    from indexer.stores.opensearch.rerank_hook import (
        DEFAULT_DOCUMENT_FIELDS,
        rerank_endpoint,
        setup_rerank,
    )

    settings = settings_with_flags()
    api_keys = settings.api.api_key_list()
    try:
        hook = setup_rerank(
            make_client(settings.opensearch),
            endpoint=rerank_endpoint(api_url),
            pipeline=pipeline,
            document_fields=document_field or DEFAULT_DOCUMENT_FIELDS,
            name=name,
            api_key=api_keys[0] if api_keys else None,
        )
    except (StoreError, ValueError) as exc:
        raise fail(str(exc)) from exc
    changed = ", ".join(hook.changed) if hook.changed else "nothing, all reused"
    typer.echo(
        f"search pipeline {hook.pipeline}: model {hook.model_id} (connector {hook.connector_id}) "
        f"-> {hook.endpoint} (changed: {changed}; "
        f"{'sends the first API key' if api_keys else 'sends no API key'})\n"
        f"search with ?search_pipeline={hook.pipeline} and "
        '"ext": {"rerank": {"query_context": {"query_text": "..."}}}'
    )
