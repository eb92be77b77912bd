"""An in-memory stand-in for the opensearch-py calls the alias helpers and the store make."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping, Sequence
from typing import Any

import opensearchpy

from indexer.stores.base import ModelIdentity
from indexer.stores.opensearch.mapping import META_KEY


def meta_for(identity: ModelIdentity, **extra: Any) -> dict[str, Any]:
    """A ``_meta.shoprank`` as a build records it, plus ``extra`` keys."""
    return {
        "format_version": 2,
        "embedder": {
            "model_id": identity.model_id,
            "weights_sha256": identity.weights_sha256,
            "dimension": identity.dimension,
            "lineage": list(identity.lineage),
        },
        "text_template": "{title}",
        "space_type": "innerproduct",
        "source": "test",
        **extra,
    }


def _not_found(what: str) -> opensearchpy.NotFoundError:
    return opensearchpy.NotFoundError(404, "index_not_found_exception", {"error": what})


class FakeIndices:
    """``client.indices``: indexes with a ``_meta``, aliases, one list of alias calls."""

    def __init__(self) -> None:
        self.metas: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, list[str]] = {}
        self.alias_calls: list[list[dict[str, Any]]] = []
        self.fail_alias_calls = 0
        """How many of the next ``update_aliases`` calls fail."""

    def _resolve(self, name: str) -> list[str]:
        if name in self.aliases:
            return list(self.aliases[name])
        if "*" in name:
            return sorted(n for n in self.metas if fnmatch.fnmatch(n, name))
        if name in self.metas:
            return [name]
        raise _not_found(name)

    def get_mapping(self, *, index: str, **_: Any) -> dict[str, Any]:
        return {
            name: {"mappings": {"_meta": {META_KEY: copy.deepcopy(self.metas[name])}}}
            for name in self._resolve(index)
        }

    def put_mapping(self, *, index: str, body: Mapping[str, Any]) -> None:
        self.metas[index] = copy.deepcopy(dict(body["_meta"][META_KEY]))

    def exists_alias(self, *, name: str) -> bool:
        return name in self.aliases

    def exists(self, *, index: str) -> bool:
        return index in self.metas

    def get_alias(self, *, name: str) -> dict[str, Any]:
        return {index: {"aliases": {name: {}}} for index in self.aliases[name]}

    def update_aliases(self, *, body: Mapping[str, Any]) -> None:
        actions = list(body["actions"])
        self.alias_calls.append(actions)
        if self.fail_alias_calls:
            self.fail_alias_calls -= 1
            raise opensearchpy.ConnectionError("N/A", "connection refused", None)
        aliases = copy.deepcopy(self.aliases)
        for action in actions:
            ((kind, target),) = action.items()
            members = aliases.setdefault(target["alias"], [])
            if kind == "remove":
                members.remove(target["index"])
            else:
                members.append(target["index"])
        self.aliases = {name: members for name, members in aliases.items() if members}

    def delete(self, *, index: str, **_: Any) -> None:
        self.metas.pop(index, None)


class FakeCluster:
    """``client``: the indices API, and searches that answer one hit from the index searched."""

    def __init__(self) -> None:
        self.indices = FakeIndices()
        self.searched: list[str] = []

    def add_index(
        self, name: str, identity: ModelIdentity, *, alias: str | None = None, **meta: Any
    ) -> None:
        """An index built with ``identity`` (behind ``alias`` alone when given)."""
        self.indices.metas[name] = meta_for(identity, **meta)
        if alias is not None:
            self.indices.aliases[alias] = [name]

    def targets(self, alias: str) -> Sequence[str]:
        return self.indices.aliases.get(alias, [])

    def search(self, *, index: str, body: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        self.searched.append(index)
        (name,) = self.indices._resolve(index)
        return {"hits": {"hits": [{"_index": name, "_id": "p1", "_score": 1.0}]}}
