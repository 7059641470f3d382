"""Getting PASCAL VOC 2012 (and SBD, :mod:`training.data.sbd`) onto disk: resumable download,
MD5 check, safe extraction.

voc_root = download_voc2012("data")  # data/VOCdevkit/VOC2012, idempotent
voc_root = download_voc2012("data", from_tar="~/Downloads/VOCtrainval_11-May-2012.tar")
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

VOC2012_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC2012_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
VOC2012_TAR_NAME = "VOCtrainval_11-May-2012.tar"
VOC2012_SUBDIR = Path("VOCdevkit") / "VOC2012"
EXTRACTED_MARKER = ".extracted-md5"
CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """Download, verification or extraction failed; the message says what was kept."""


def normalize_md5(md5: str) -> str:
    """Lower-case hex digest; mirrors often print MD5s in upper case."""
    digest = md5.strip().lower()
    if len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"expected an MD5 of 32 hex digits, got {md5!r}")
    return digest


def file_md5(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One HTTP attempt, appending to ``part`` from where it stops (HTTP Range)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        )
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing left past offset: the file is complete
            return
        raise
    with response:
        resumed_at = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
        if offset and response.status == 206 and resumed_at == str(offset):
            mode = "ab"
        else:
            if offset:
                log.warning("%s did not resume at byte %d; downloading from the start", url, offset)
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))
    # urllib returns a short body without complaint when the peer closes early.
    got = part.stat().st_size
    if total is not None and got < total:
        raise ConnectionError(f"connection closed after {got} of {total} bytes")


def download_file(
    url: str,
    dest: str | Path,
    *,
    md5: str,
    retries: int = 3,
    timeout: float = 60.0,
    backoff_s: float = 1.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` across cuts and runs; verify MD5.

    A cut connection is retried ``retries`` times from where it stopped; if it still fails the
    partial file is kept, so running again resumes. Waits ``backoff_s``, doubling, between
    attempts. A complete file with the wrong checksum is removed (resuming it could never
    succeed) and DownloadError says so.
    """
    md5 = normalize_md5(md5)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if file_md5(dest) == md5:
            log.info("%s already downloaded and verified", dest)
            return dest
        raise DownloadError(
            f"{dest} exists but its MD5 is not {md5}; remove it or pass it with --from-tar "
            "if it is the file you want"
        )
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            _fetch_once(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as error:
            if error.code < 500:  # the request itself is wrong: retrying cannot help
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
            failure: Exception = error
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            failure = error
        kept = part.stat().st_size if part.exists() else 0
        log.warning("download attempt %d/%d failed: %s", attempt, retries, failure)
        if attempt == retries:
            raise DownloadError(
                f"download of {url} failed after {retries} attempts ({failure}); partial file "
                f"kept at {part} ({kept} bytes): run the same command to resume"
            ) from failure
        time.sleep(min(backoff_s * 2 ** (attempt - 1), 30.0))
    got = file_md5(part)
    if got != md5:
        size = part.stat().st_size
        part.unlink()
        raise DownloadError(
            f"checksum mismatch for {url}: expected MD5 {md5}, got {got} ({size} bytes); "
            f"removed {part} since a complete file with the wrong content cannot be resumed; "
            "try another mirror with --url"
        )
    part.rename(dest)
    return dest


def safe_extract(tar_path: str | Path, dest: str | Path) -> None:
    """Extract a tar into ``dest``, refusing the whole archive if any member would land outside
    it (absolute paths, ``..``, links out) before anything is written."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        for member in members:
            try:
                if Path(member.name).is_absolute():  # data_filter would silently re-root it
                    raise tarfile.AbsolutePathError(member)
                tarfile.data_filter(member, str(dest))
            except tarfile.FilterError as error:
                raise DownloadError(
                    f"{tar_path}: member {member.name!r} refused ({error}); nothing was extracted"
                ) from error
        tar.extractall(dest, members=members, filter="data")


def download_voc2012(
    root: str | Path,
    *,
    url: str = VOC2012_URL,
    from_tar: str | Path | None = None,
    md5: str = VOC2012_MD5,
    retries: int = 3,
    progress: bool = True,
) -> Path:
    """Download (or take ``from_tar``), verify and extract VOC 2012 under ``root``.

    Returns the VOC root ``root/VOCdevkit/VOC2012``. Idempotent: a finished extraction of the
    same archive is recognised by its marker and nothing is done again.
    """
    return download_archive(
        root,
        VOC2012_SUBDIR,
        url=url,
        tar_name=VOC2012_TAR_NAME,
        from_tar=from_tar,
        md5=md5,
        retries=retries,
        progress=progress,
        what="VOC 2012",
    )


def download_archive(
    root: str | Path,
    subdir: str | Path,
    *,
    url: str,
    tar_name: str,
    md5: str,
    from_tar: str | Path | None = None,
    retries: int = 3,
    progress: bool = True,
    what: str = "the dataset",
) -> Path:
    """Download ``url`` to ``root/tar_name`` (or take ``from_tar``), verify its MD5 and extract
    it safely under ``root``; returns ``root/subdir``, the folder the archive must hold.

    Idempotent: a marker in ``root/subdir`` remembers the MD5 of the archive extracted there.
    VOC 2012 (:func:`download_voc2012`) and SBD (:func:`training.data.sbd.download_sbd`)
    both come this way.
    """
    md5 = normalize_md5(md5)
    root = Path(root)
    target = root / subdir
    marker = target / EXTRACTED_MARKER
    if marker.is_file() and marker.read_text().strip() == md5:
        log.info("%s already extracted at %s", what, target)
        return target
    if from_tar is not None:
        tar_path = Path(from_tar).expanduser()
        if not tar_path.is_file():
            raise DownloadError(f"--from-tar {tar_path}: no such file")
        got = file_md5(tar_path)
        if got != md5:
            raise DownloadError(f"{tar_path}: expected MD5 {md5}, got {got}; file left as it is")
    else:
        tar_path = download_file(url, root / tar_name, md5=md5, retries=retries, progress=progress)
    log.info("extracting %s into %s", tar_path, root)
    safe_extract(tar_path, root)
    if not target.is_dir():
        raise DownloadError(f"{tar_path} holds no {Path(subdir)}/ folder; is it the {what} tar?")
    marker.write_text(md5 + "\n")
    return target
