import json

import pytest

from refseg_bench.datasets import jsonstream
from refseg_bench.datasets.base import DatasetError
from refseg_bench.datasets.jsonstream import iter_members

DOC = {
    "info": {"description": "caf\u00e9 \"quoted\" \\ back", "year": 2014, "ratio": -1.5e-3},
    "images": [{"id": 1234567, "file_name": "COCO_val2014_000000000042.jpg", "height": 480,
                "width": 640}, {"id": 7, "file_name": "\u6f22\u5b57.jpg", "height": 1,
                                "width": 2}],
    "licenses": [],
    "annotations": [{"id": i, "image_id": i % 3, "segmentation": [[1.25, 2.5, 3, 4, 5, 6.75]],
                     "iscrowd": 0, "area": 123456789012} for i in range(40)]
    + [{"id": 99, "segmentation": {"size": [3, 4], "counts": [0, 5, 7]}, "iscrowd": 1}],
    "categories": [{"id": 1, "name": "person"}, {"id": 90, "name": "toothbrush"}],
    "empty": [],
    "flag": True,
    "nothing": None,
}


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_streams_exactly_what_json_load_reads(tmp_path, monkeypatch, chunk, indent):
    monkeypatch.setattr(jsonstream, "CHUNK_CHARS", chunk)  # cut values at every position
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(DOC, indent=indent, ensure_ascii=False), encoding="utf-8")
    got: dict = {}
    for key, value in iter_members(path, stream=("images", "annotations", "empty", "flag")):
        if key in ("images", "annotations"):
            got.setdefault(key, []).append(value)
        else:
            got[key] = value
    got.setdefault("empty", [])
    assert got == DOC


def test_an_empty_object_yields_nothing(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(" { } \n")
    assert list(iter_members(path, stream=("images",))) == []


@pytest.mark.parametrize("text, where", [
    ('{"images": [{"id": 1}, {"id": 2}', "line 1"),        # truncated download
    ('{"images": [{"id": 1} {"id": 2}]}', "line 1"),       # missing comma
    ('{\n"images": [\n{"id": 1},\n{"id": 2,,}\n]}', "line 4"),
    ('[1, 2, 3]', "line 1"),                               # not an object
    ('{"a": 1} trailing', "extra data"),
    ('', "end of file"),
])
def test_corrupt_json_names_file_and_position(tmp_path, text, where):
    path = tmp_path / "instances_val2014.json"
    path.write_text(text)
    with pytest.raises(DatasetError) as err:
        list(iter_members(path, stream=("images",)))
    msg = str(err.value)
    assert str(path) in msg and where in msg and "corrupt JSON" in msg


def test_not_utf8_is_a_clear_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'{"a": "\xff\xfe"}')
    with pytest.raises(DatasetError, match="not UTF-8"):
        list(iter_members(path))


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="missing file"):
        list(iter_members(tmp_path / "nope.json"))
