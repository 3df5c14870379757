"""Fetch a dataset archive, turning failure into a reason the caller can show in one line."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets.utils import download_and_extract_archive


def fetch_archive(url: str, root: Path, filename: str, md5: str, download: bool) -> str | None:
    """Download and extract `url` into `root`; None on success, else why it did not happen.

    The caller turns the reason into a `UserError` that also says how to fetch the data by hand,
    which is what someone on an offline machine needs. The archive is deleted once extracted.
    """
    if not download:
        return "download=False"
    try:
        download_and_extract_archive(
            url, str(root), filename=filename, md5=md5, remove_finished=True
        )
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad md5 a RuntimeError
        return " ".join(str(error).split()) or type(error).__name__
    return None
