"""``comfy-cassettes import``: HAR files (or several merged) into one templated cassette on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .cassette import BlobStore, save
from .record.build import build_cassette, merge_documents
from .record.har import read_har


def import_har(sources: Sequence[str | Path], output: str | Path, *, overwrite: bool = False) -> Path:
    """Template the sessions in ``sources`` into the cassette ``output`` (blobs beside it); returns its path."""
    output = Path(output)
    blobs = BlobStore(output.parent)
    documents = [build_cassette(read_har(source), blobs) for source in sources]
    document = documents[0] if len(documents) == 1 else merge_documents(documents)
    return save(document, output, overwrite=overwrite)
