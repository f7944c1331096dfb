"""Catalogue folder entries: parsing, per-file verification, the real-or-random rule, the
`checkpoints` listing and a per-file fetch from a folder served on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from model_helpers import make_entry

from refseg_bench.errors import CheckpointError
from refseg_bench.models.checkpoints import CatalogueFile, _files, catalogue, fetch
from refseg_bench.models.folders import folder_status, missing_in, verify_folder
from refseg_bench.presets import missing_checkpoints

FILES = {"unet/config.json": b'{"a": 1}', "unet/weights.safetensors": b"\x00" * 300,
         "tokenizer/vocab.json": b"{}"}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _folder_entry(published=True, **kw):
    files = tuple(CatalogueFile(p, _sha(d) if published else None, len(d))
                  for p, d in FILES.items())
    return make_entry("tiny_folder", "tiny-folder", None, files=files, **kw)


def _write(root, skip=()):
    for rel, data in FILES.items():
        if rel not in skip:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
    return root


def test_packaged_stable_diffusion_entry_is_a_folder_of_the_files_the_loader_reads():
    from refseg_bench.models.diffusion import SD_FILES

    sd = catalogue()["sd21_base"]
    assert sd.is_folder and sd.sha256 is None and sd.size is None
    assert sorted(f.path for f in sd.files) == sorted(SD_FILES)
    assert sd.url.startswith("https://") and sd.licence
    assert catalogue()["sam2_hiera_t"].variant == "2.0/hiera_t"  # CAV-SAM's SAM 2
    assert not catalogue()["sam_vit_h"].is_folder


def test_folder_entries_are_checked_when_parsed():
    body = {"sha256": None, "size": None, "files": {"a/b.json": {"sha256": None, "size": 3}}}
    assert _files("x", body) == (CatalogueFile("a/b.json", None, 3),)
    with pytest.raises(ValueError, match="top-level sha256 and size must be null"):
        _files("x", {**body, "sha256": "0" * 64})
    with pytest.raises(ValueError, match="unknown keys \\['md5'\\]"):
        _files("x", {"files": {"a": {"md5": "x"}}})


def test_verified_folder_is_official_only_when_every_file_matches(fake_catalogue, tmp_path):
    fake_catalogue(_folder_entry())
    _write(tmp_path / "ckpt" / "tiny-folder")
    info = verify_folder("tiny_folder", list(FILES))
    assert info.weights == "official" and info.sha256 == {p: _sha(d) for p, d in FILES.items()}
    fake_catalogue(_folder_entry(published=False))
    info = verify_folder("tiny_folder", list(FILES))
    assert info.weights == "unverified" and "no published sha256 for 3 of 3" in info.note
    assert info.to_record()["files_sha256"]["unet/config.json"] == _sha(FILES["unet/config.json"])


def test_a_wrong_or_missing_file_is_named(fake_catalogue, tmp_path):
    fake_catalogue(_folder_entry())
    root = _write(tmp_path / "ckpt" / "tiny-folder", skip=("tokenizer/vocab.json",))
    with pytest.raises(CheckpointError, match=r"lacks 1 of 3 files: \['tokenizer/vocab.json'\]"
                       ".*checkpoints fetch tiny_folder"):
        verify_folder("tiny_folder", list(FILES))
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.json").write_bytes(b"[]")
    with pytest.raises(CheckpointError, match="vocab.json has sha256 .* expected"):
        verify_folder("tiny_folder", list(FILES))
    with pytest.raises(CheckpointError, match="does not list"):
        verify_folder("tiny_folder", [*FILES, "vae/config.json"])


def test_real_or_random_rule_sees_every_file_of_a_folder(fake_catalogue, tmp_path):
    fake_catalogue(_folder_entry())
    root = tmp_path / "ckpt" / "tiny-folder"
    assert len(missing_checkpoints(["tiny_folder", None])) == 3
    _write(root, skip=("unet/weights.safetensors",))
    assert missing_in("tiny_folder") == [str(root / "unet/weights.safetensors")]
    assert folder_status(_folder_entry(), tmp_path / "ckpt", verify=False) == \
        "partial (2 of 3 files)"
    _write(root)
    assert missing_checkpoints(["tiny_folder"]) == []
    assert folder_status(_folder_entry(), tmp_path / "ckpt", True) == \
        "present (3 files), sha256 ok"
    assert missing_in(tmp_path / "elsewhere") == [str(tmp_path / "elsewhere")]


@pytest.fixture
def folder_server(tmp_path):
    served = _write(tmp_path / "served")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_fetch_downloads_each_file_and_checks_its_hash(fake_catalogue, tmp_path,
                                                       folder_server, capsys):
    from refseg_bench.cli import main as cli_main

    fake_catalogue(_folder_entry(url=folder_server))
    path = fetch("tiny_folder", progress=False)
    assert path == tmp_path / "ckpt" / "tiny-folder"
    assert all((path / p).read_bytes() == d for p, d in FILES.items())
    assert verify_folder("tiny_folder", list(FILES)).weights == "official"
    assert cli_main(["checkpoints", "list", "--verify"]) == 0
    assert "tiny-folder/" in capsys.readouterr().out
    bad = (CatalogueFile("unet/config.json", "1" * 64, None),)
    fake_catalogue(make_entry("bad_folder", "bad-folder", None, files=bad, url=folder_server))
    with pytest.raises(CheckpointError, match="expected 1{64}"):
        fetch("bad_folder", progress=False)
