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
    from ranker.compress.records import CompressConfig


@dataclass(frozen=True)
class CompressionInputs:
    """A compression run's inputs, their key, and the files and recipe it runs with."""

    key: str
    inputs: Mapping[str, Any]
    judgments: Path
    catalog: Path
    config: CompressConfig
    teacher: str | None
    """The reranker version to distil (None: production's source)."""

    def as_dict(self) -> dict[str, Any]:
        """The inputs, for logs and task results."""
        return dict(self.inputs)


def data_files(
    settings: Settings, *, judgments: str | Path | None, catalog: str | Path | None
) -> tuple[Path, Path]:
    """The judgments and catalog a job uses: given, else the workers' settings, else the
    bundled samples."""
    from indexer.catalog import sample_catalog_path, sample_judgments_path

    workers = settings.workers
    return (
        Path(judgments or workers.judgments or sample_judgments_path()),
        Path(catalog or workers.catalog or sample_catalog_path()),
    )


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
) -> CompressionInputs:
    """The inputs of compressing ``teacher`` (a reranker version; None: production's source)
    on ``judgments`` and ``catalog`` (default: settings, else the samples)."""
    from ranker.compress.inputs import compression_inputs as job_inputs
    from ranker.compress.inputs import compression_key

    judgments_path, catalog_path = data_files(settings, judgments=judgments, catalog=catalog)
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
