"""Download, resume, checksum and extraction against a real HTTP server on 127.0.0.1."""

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from training.cli import main as cli_main
from training.data.check import check_root
from training.data.download import (
    VOC2012_SUBDIR,
    VOC2012_TAR_NAME,
    DownloadError,
    download_file,
    download_voc2012,
    safe_extract,
)


class RangeServer:
    """Serves one payload with HTTP Range support; can cut the first responses short."""

    def __init__(self, payload: bytes, cut_after: int | None = None, cuts: int = 0):
        self.payload, self.cut_after, self.cuts_left = payload, cut_after, cuts
        self.ranges: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith(VOC2012_TAR_NAME):
                    self.send_error(404)
                    return
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                start = int(requested.removeprefix("bytes=").split("-")[0]) if requested else 0
                if start >= len(server.payload):
                    self.send_response(416)
                    self.end_headers()
                    return
                body = server.payload[start:]
                self.send_response(206 if requested else 200)
                if requested:
                    self.send_header(
                        "Content-Range",
                        f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}",
                    )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cuts_left > 0 and server.cut_after is not None:
                    server.cuts_left -= 1
                    self.wfile.write(body[: server.cut_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{VOC2012_TAR_NAME}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_voc_tar(voc_sample: Path) -> bytes:
    """A small tar laid out like the real one: VOCdevkit/VOC2012/{JPEGImages,...}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets"):
            tar.add(voc_sample / sub, arcname=str(VOC2012_SUBDIR / sub))
    return buffer.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_full_download_verify_extract_and_idempotence(voc_sample, tmp_path):
    payload = make_voc_tar(voc_sample)
    with RangeServer(payload) as server:
        voc_root = download_voc2012(tmp_path, url=server.url, md5=md5(payload), progress=False)
        assert voc_root == tmp_path / VOC2012_SUBDIR
        assert check_root(voc_root).ok
        assert (tmp_path / VOC2012_TAR_NAME).read_bytes() == payload
        requests = len(server.ranges)
        assert download_voc2012(tmp_path, url=server.url, md5=md5(payload)) == voc_root
        assert len(server.ranges) == requests, "a finished download must not fetch again"


def test_resume_after_cut_within_one_call(tmp_path):
    payload = bytes(range(256)) * 4000
    with RangeServer(payload, cut_after=100_000, cuts=2) as server:
        dest = download_file(
            server.url, tmp_path / "f.tar", md5=md5(payload), backoff_s=0.01, progress=False
        )
        assert dest.read_bytes() == payload
    assert server.ranges == [None, "bytes=100000-", "bytes=200000-"]


def test_resume_across_runs_after_giving_up(tmp_path):
    payload = bytes(range(256)) * 4000
    dest = tmp_path / "f.tar"
    with RangeServer(payload, cut_after=300_000, cuts=1) as server:
        with pytest.raises(
            DownloadError, match=r"partial file kept at .*f.tar.part \(300000 bytes\)"
        ):
            download_file(server.url, dest, md5=md5(payload), retries=1, progress=False)
        assert (tmp_path / "f.tar.part").stat().st_size == 300_000
        download_file(server.url, dest, md5=md5(payload), progress=False)
    assert dest.read_bytes() == payload
    assert server.ranges[-1] == "bytes=300000-"
    assert not (tmp_path / "f.tar.part").exists()


def test_checksum_mismatch_removes_the_file_and_says_so(tmp_path):
    payload = b"not the VOC tar" * 100
    pattern = r"expected MD5 0+, got .* removed .*f.tar.part"
    with RangeServer(payload) as server, pytest.raises(DownloadError, match=pattern):
        download_file(server.url, tmp_path / "f.tar", md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_server_refusing_is_a_clear_error(tmp_path):
    with RangeServer(b"x") as server:
        url = server.url.replace(VOC2012_TAR_NAME, "missing")
    with pytest.raises(DownloadError, match="failed after 1 attempts"):
        download_file(url, tmp_path / "f.tar", md5="0" * 32, retries=1, progress=False)


def test_client_error_is_not_retried_and_not_called_resumable(tmp_path):
    with RangeServer(b"x") as server, pytest.raises(DownloadError, match=r"HTTP 404") as caught:
        download_file(server.url + ".missing", tmp_path / "f.tar", md5="0" * 32, progress=False)
    assert "resume" not in str(caught.value)
    assert server.ranges == []


def test_md5_in_upper_case_is_accepted_and_garbage_refused(tmp_path):
    payload = b"abc" * 1000
    with RangeServer(payload) as server:
        dest = download_file(
            server.url, tmp_path / "f.tar", md5=md5(payload).upper(), progress=False
        )
    assert dest.read_bytes() == payload
    with pytest.raises(ValueError, match="expected an MD5 of 32 hex digits, got 'xyz'"):
        download_file(server.url, tmp_path / "g.tar", md5="xyz", progress=False)


@pytest.mark.parametrize("bad_name", ["../escape.txt", "/abs/escape.txt", "VOCdevkit/../../x"])
def test_path_traversal_member_refused_before_anything_is_written(tmp_path, bad_name):
    tar_path = tmp_path / "evil.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in ("VOCdevkit/VOC2012/ok.txt", bad_name):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match=r"refused .* nothing was extracted"):
        safe_extract(tar_path, dest)
    assert not (dest / "VOCdevkit").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_symlink_out_of_root_refused(tmp_path):
    tar_path = tmp_path / "link.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("VOCdevkit/link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DownloadError, match="VOCdevkit/link"):
        safe_extract(tar_path, tmp_path / "dest")


def test_cli_from_tar(voc_sample, tmp_path, capsys):
    payload = make_voc_tar(voc_sample)
    tar_path = tmp_path / "given.tar"
    tar_path.write_bytes(payload)
    root = tmp_path / "data"
    assert (
        cli_main(
            [
                "data",
                "download",
                "--root",
                str(root),
                "--from-tar",
                str(tar_path),
                "--md5",
                md5(payload),
            ]
        )
        == 0
    )
    assert f"VOC 2012 ready at {root / VOC2012_SUBDIR}" in capsys.readouterr().out
    assert check_root(root / VOC2012_SUBDIR).ok
    # A wrong checksum leaves the user's own file alone.
    assert (
        cli_main(
            ["data", "download", "--root", str(tmp_path / "other"), "--from-tar", str(tar_path)]
        )
        == 1
    )
    assert "expected MD5 6cd6e144" in capsys.readouterr().err
    assert tar_path.exists()
