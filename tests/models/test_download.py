"""Resumable, hash-checked download against a small file served from 127.0.0.1."""

from __future__ import annotations

import hashlib
import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from model_helpers import make_entry

from refseg_bench.cli import main as cli_main
from refseg_bench.errors import CheckpointError
from refseg_bench.models.checkpoints import fetch
from refseg_bench.models.download import download, part_path

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file.bin, honouring ``Range: bytes=N-`` unless the server's
    ``honour_range`` is False; records the Range headers it saw."""

    def do_GET(self):  # http.server API name
        server = self.server
        if self.path != "/file.bin":
            self.send_error(404, "no such file")
            return
        rng = self.headers.get("Range")
        server.ranges.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and server.honour_range else 0
        if start >= len(PAYLOAD) and rng:
            self.send_response(416)
            self.end_headers()
            return
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.ranges, srv.honour_range = [], True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/file.bin"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_fresh_download_checks_hash(server, tmp_path):
    dest = download(server.url, tmp_path / "f.bin", expected_sha256=SHA,
                    expected_size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and not part_path(dest).exists()
    assert server.ranges == [None]


def test_resume_from_part_file_requests_the_rest(server, tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:30_000])
    download(server.url, dest, expected_sha256=SHA, progress=False)
    assert server.ranges == ["bytes=30000-"]
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.honour_range = False
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(PAYLOAD[:30_000])
    download(server.url, dest, expected_sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD  # not 30,000 bytes duplicated


def test_complete_part_file_is_finished_without_data(server, tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(PAYLOAD)
    download(server.url, dest, expected_sha256=SHA, progress=False)
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"] and dest.read_bytes() == PAYLOAD


def test_hash_mismatch_deletes_part_and_leaves_no_file(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(CheckpointError, match=f"expected {'a' * 64}"):
        download(server.url, dest, expected_sha256="a" * 64, progress=False)
    assert not dest.exists() and not part_path(dest).exists()


def test_corrupt_part_is_caught_by_hash(server, tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"\xff" * 1000)  # wrong prefix: resuming cannot fix it
    with pytest.raises(CheckpointError, match="sha256"):
        download(server.url, dest, expected_sha256=SHA, progress=False)
    download(server.url, dest, expected_sha256=SHA, progress=False)  # clean retry succeeds
    assert dest.read_bytes() == PAYLOAD


def test_size_mismatch_keeps_part_for_resume(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(CheckpointError, match="expected 999999"):
        download(server.url, dest, expected_size=999_999, progress=False)
    assert part_path(dest).stat().st_size == len(PAYLOAD)


def test_http_error_is_a_checkpoint_error(server, tmp_path):
    with pytest.raises(CheckpointError, match="HTTP 404"):
        download(server.url.replace("file.bin", "nope.bin"), tmp_path / "x", progress=False)


def _closed_port_url() -> str:
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


def test_unreachable_server_keeps_part(tmp_path):
    dest = tmp_path / "f.bin"
    part_path(dest).write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="cannot connect to 127.0.0.1.*3 bytes already "
                                              "downloaded are kept"):
        download(_closed_port_url(), dest, progress=False, timeout=2)


def test_unreachable_server_without_part_claims_nothing_kept(tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(CheckpointError) as info:
        download(_closed_port_url(), dest, progress=False, timeout=2)
    assert "Nothing was written" in str(info.value) and ".part" not in str(info.value)
    assert not part_path(dest).exists() and not dest.exists()


def test_cli_fetch_dns_failure_is_reported_as_such(fake_catalogue, monkeypatch, capsys):
    def no_dns(request, timeout):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    fake_catalogue(make_entry("blob", "blob.bin", SHA, url="https://no-such-host.invalid/b"))
    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    assert cli_main(["checkpoints", "fetch", "blob", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot connect to no-such-host.invalid")
    assert "Name or service not known" in err and "Nothing was written" in err
    assert "kept" not in err and len(err.splitlines()) == 1


def test_existing_file_with_wrong_hash_is_refused(server, tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(CheckpointError, match="already exists"):
        download(server.url, dest, expected_sha256=SHA, progress=False)


def test_fetch_by_catalogue_name_with_url_override(server, fake_catalogue, tmp_path):
    fake_catalogue(make_entry("blob", "blob.bin", SHA, size=len(PAYLOAD)))
    path = fetch("blob", tmp_path / "d", url_override=server.url, progress=False)
    assert path == tmp_path / "d" / "blob.bin" and path.read_bytes() == PAYLOAD


def test_fetch_refuses_manual_entries(fake_catalogue, tmp_path):
    fake_catalogue(make_entry("drive", "w.pth", None, direct_download=False))
    with pytest.raises(CheckpointError, match="by hand"):
        fetch("drive", tmp_path)


def test_cli_fetch_then_list(server, fake_catalogue, tmp_path, capsys):
    fake_catalogue(make_entry("blob", "blob.bin", SHA), make_entry("gone", "gone.bin", None))
    dest = tmp_path / "ckpt"
    assert cli_main(["checkpoints", "fetch", "blob", "--url", server.url, "--no-progress"]) == 0
    assert f"sha256 {SHA} ok" in capsys.readouterr().out
    assert (dest / "blob.bin").read_bytes() == PAYLOAD
    assert cli_main(["checkpoints", "list", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "sha256 ok" in out and "missing" in out
    (dest / "blob.bin").write_bytes(b"tampered")
    cli_main(["checkpoints", "list", "--verify"])
    assert "MISMATCH" in capsys.readouterr().out


def test_cli_fetch_bad_hash_exits_2(server, fake_catalogue, capsys):
    fake_catalogue(make_entry("blob", "blob.bin", "b" * 64))
    assert cli_main(["checkpoints", "fetch", "blob", "--url", server.url, "--no-progress"]) == 2
    assert "expected bbbb" in capsys.readouterr().err
