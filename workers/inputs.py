"""The files and recipe a worker's job uses, and the key of a compression's inputs.

The key is :func:`ranker.compress.inputs.compression_key`: the hash of the teacher's and the
source bi-encoder's weights (and their registry versions), the judgments' and catalog's
bytes, the recipe, the serving settings students are judged with, ONNX Runtime's version
and the CPU's int8 features. The compression job registers its winner under that key, so
equal keys mean the same version, whichever process computed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ranker.settings import Settings

if TYPE_CHECKING:
    from indexer.catalog import CatalogFile
    from ranker.compress.records import CompressConfig
    from ranker.evaluation.judgment_files import JudgmentsFile


@dataclass(frozen=True)
class CompressionInputs:
    """A compression run's inputs, their key, and the files and recipe it runs with."""

    key: str
    inputs: Mapping[str, Any]
    judgments: JudgmentsFile
    catalog: CatalogFile
    config: CompressConfig
    teacher: str | None
    """The reranker version to distil (None: production's source)."""

    def as_dict(self) -> dict[str, Any]:
        """The inputs, for logs and task results."""
        return dict(self.inputs)


def data_files(
    settings: Settings,
    *,
    judgments: str | Path | None,
    catalog: str | Path | None,
    judgment_mapping: Mapping[str, Any] | None = None,
    catalog_mapping: Mapping[str, Any] | None = None,
) -> tuple[JudgmentsFile, CatalogFile]:
    """The judgments and catalog a job uses, with their mappings: given, else the workers'
    settings, else the bundled samples; but judgments other than the sample's without a
    catalog take the index's catalog (:func:`ranker.shop.resolve_catalog`), never the
    sample one."""
    from indexer.catalog import CatalogFile, FieldMapping, sample_catalog_path
    from indexer.catalog import sample_judgments_path as sample_judgments
    from ranker.evaluation.judgment_files import JudgmentMapping, JudgmentsFile
    from ranker.shop import resolve_catalog

    workers = settings.workers
    judgments_path = judgments or workers.judgments
    catalog_path = catalog or workers.catalog
    found = JudgmentsFile(
        Path(judgments_path or sample_judgments()),
        JudgmentMapping.model_validate(judgment_mapping or {}),
    )
    mapping = FieldMapping.model_validate(catalog_mapping or {})
    given = CatalogFile(Path(catalog_path), mapping) if catalog_path else None
    shop_catalog = resolve_catalog(settings, given, judgments_given=judgments_path is not None)
    return found, shop_catalog or CatalogFile(sample_catalog_path(), mapping)


def compress_config(settings: Settings, overrides: Mapping[str, Any]) -> CompressConfig:
    """The recipe a worker compresses with: ``settings.workers.compress``, then ``overrides``."""
    from ranker.compress.records import CompressConfig

    return CompressConfig.model_validate({**settings.workers.compress, **overrides})


def compression_inputs(
    settings: Settings,
    *,
    teacher: str | None = None,
    judgments: str | Path | None = None,
    catalog: str | Path | None = None,
    config: Mapping[str, Any] | None = None,
    judgment_mapping: Mapping[str, Any] | None = None,
    catalog_mapping: Mapping[str, Any] | None = None,
) -> CompressionInputs:
    """The inputs of compressing ``teacher`` (a reranker version; None: production's source)
    on ``judgments`` and ``catalog`` (default: settings, else the samples), read with the
    mappings given (JSON; default: ESCI's columns)."""
    from ranker.compress.inputs import compression_inputs as job_inputs
    from ranker.compress.inputs import compression_key

    judgments_path, catalog_path = data_files(
        settings,
        judgments=judgments,
        catalog=catalog,
        judgment_mapping=judgment_mapping,
        catalog_mapping=catalog_mapping,
    )
    recipe = compress_config(settings, config or {})
    return CompressionInputs(
        key=compression_key(
            settings, recipe, judgments=judgments_path, catalog=catalog_path, teacher=teacher
        ),
        inputs=job_inputs(
            settings, recipe, judgments=judgments_path, catalog=catalog_path, teacher=teacher
        ),
        judgments=judgments_path,
        catalog=catalog_path,
        config=recipe,
        teacher=teacher,
    )
