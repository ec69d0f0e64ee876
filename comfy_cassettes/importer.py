"""``comfy-cassettes import``: HAR files (or several merged) into one templated cassette on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .cassette import BlobStore, save
from .record.build import build_cassette, merge_documents
from .record.har import read_har
from .record.scrub import Scrubber


def import_har(
    sources: Sequence[str | Path], output: str | Path, *, overwrite: bool = False, scrubber: Scrubber | None = None
) -> Path:
    """Template the sessions in ``sources`` into the cassette ``output`` (blobs beside it); returns its path.

    Secrets are scrubbed as when recording (``scrubber``, default :class:`~comfy_cassettes.record.scrub.Scrubber`).
    """
    output = Path(output)
    blobs = BlobStore(output.parent)
    documents = [build_cassette(read_har(source), blobs, scrubber=scrubber) for source in sources]
    document = documents[0] if len(documents) == 1 else merge_documents(documents)
    return save(document, output, overwrite=overwrite)
