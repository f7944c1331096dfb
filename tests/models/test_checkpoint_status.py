"""`refseg-bench checkpoints [list] [--verify]`: the status of each local file, with its size
checked against the catalogue's."""

import hashlib

from model_helpers import make_entry

from refseg_bench.cli import main as cli_main

PAYLOAD = b"weights" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _listing(capsys, *args) -> str:
    assert cli_main(["checkpoints", *args]) == 0
    return capsys.readouterr().out


def test_verify_works_with_and_without_list(fake_catalogue, tmp_path, capsys):
    fake_catalogue(make_entry("blob", "blob.bin", SHA, size=len(PAYLOAD)))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "blob.bin").write_bytes(PAYLOAD)
    assert "not hashed; use --verify" in _listing(capsys)
    short = _listing(capsys, "--verify")
    assert "present, sha256 ok" in short
    assert _listing(capsys, "list", "--verify") == short
    assert _listing(capsys, "--verify", "list") == short


def test_dest_works_with_and_without_list(fake_catalogue, tmp_path, capsys):
    fake_catalogue(make_entry("blob", "blob.bin", SHA))
    other = tmp_path / "other"
    other.mkdir()
    (other / "blob.bin").write_bytes(PAYLOAD)
    for args in (["--dest", str(other)], ["list", "--dest", str(other)]):
        out = _listing(capsys, *args, "--verify")
        assert "sha256 ok" in out and "other" in out


def test_a_file_of_the_wrong_size_is_not_present(fake_catalogue, tmp_path, capsys):
    """A 7 kB file where the catalogue lists 2.4 GB: a size mismatch, seen without hashing."""
    fake_catalogue(make_entry("big", "big.pth", SHA, size=2_564_550_879),
                   make_entry("nosize", "nosize.pth", None))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "big.pth").write_bytes(PAYLOAD)
    (tmp_path / "ckpt" / "nosize.pth").write_bytes(PAYLOAD)
    out = _listing(capsys)
    big = next(line for line in out.splitlines() if "big.pth" in line)
    assert "size MISMATCH" in big and "7,000 bytes" in big and "2,564,550,879" in big
    assert "sha256 ok" not in big and "not hashed" not in big
    nosize = next(line for line in out.splitlines() if "nosize.pth" in line)
    assert "unverified" in nosize  # no catalogued size or hash: nothing to compare
