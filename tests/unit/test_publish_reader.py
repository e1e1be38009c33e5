from __future__ import annotations

import gzip
import io
from pathlib import Path

import orjson
import pytest

from streams.publish import iter_inputs, read_records

pytestmark = pytest.mark.unit

TRAIL = {"eventVersion": "1.09", "eventSource": "s3.amazonaws.com", "eventName": "GetObject"}


def test_json_lines_keep_their_line_numbers_and_skip_blank_lines() -> None:
    data = b'{"a": 1}\n\n{"b": 2}\r\nnot json\n'
    records = list(read_records(io.BytesIO(data), "f.jsonl", "gateway"))
    assert records == [
        (b'{"a": 1}', {"file": "f.jsonl", "line": 1}),
        (b'{"b": 2}', {"file": "f.jsonl", "line": 3}),
        (b"not json", {"file": "f.jsonl", "line": 4}),
    ]


def test_cloudtrail_delivery_file_is_split_into_records_pretty_printed_or_not(tmp_path: Path) -> None:
    document = {"Records": [dict(TRAIL, eventID=str(i)) for i in range(3)]}
    pretty = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    records = list(read_records(io.BytesIO(pretty), "trail.json", "cloudtrail"))
    assert [orjson.loads(r)["eventID"] for r, _ in records] == ["0", "1", "2"]
    assert [p["record"] for _, p in records] == [0, 1, 2]

    path = tmp_path / "trail.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps(document) + b"\n" + orjson.dumps(dict(TRAIL, eventID="x"))))
    records = list(iter_inputs([str(path)], "cloudtrail", io.BytesIO()))
    assert [orjson.loads(r)["eventID"] for r, _ in records] == ["0", "1", "2", "x"]
    assert records[-1][1] == {"file": str(path), "line": 2}


def test_a_broken_pretty_printed_document_is_one_bad_record() -> None:
    records = list(read_records(io.BytesIO(b'{\n  "Records": [\n'), "bad.json", "cloudtrail"))
    assert records == [(b'{\n  "Records": [', {"file": "bad.json", "line": 1})]


def test_stdin_is_read_with_dash() -> None:
    stdin = io.BytesIO(b'{"x": 1}\n')
    assert list(iter_inputs(["-"], "falco", stdin)) == [(b'{"x": 1}', {"file": "<stdin>", "line": 1})]


SCANNER_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def test_a_scanner_report_is_one_document_split_into_package_records(tmp_path: Path) -> None:
    document = orjson.loads((SCANNER_FIXTURES / "grype" / "grype_json-images-presenter.json").read_bytes())
    pretty = orjson.dumps(document, option=orjson.OPT_INDENT_2)
    records = list(read_records(io.BytesIO(pretty), "grype.json", "grype"))
    assert [orjson.loads(r)["matches"][0]["artifact"]["name"] for r, _ in records] == ["package-1", "package-2"]
    assert [p for _, p in records] == [{"file": "grype.json", "line": 1, "record": 0},
                                       {"file": "grype.json", "line": 1, "record": 1}]
    # Several reports, one per line (gzipped): each split, with its line.
    path = tmp_path / "reports.jsonl.gz"
    path.write_bytes(gzip.compress(orjson.dumps(document) + b"\n\n" + orjson.dumps(document) + b"\n"))
    positions = [p for _, p in iter_inputs([str(path)], "grype", io.BytesIO())]
    assert [(p["line"], p["record"]) for p in positions] == [(1, 0), (1, 1), (3, 0), (3, 1)]


def test_a_broken_scanner_report_is_one_bad_record_kept_whole() -> None:
    broken = b'{\n  "SchemaVersion": 2,\n  "Results": [\n'
    assert list(read_records(io.BytesIO(broken), "bad.json", "trivy")) == [
        (broken.strip(), {"file": "bad.json", "line": 1, "record": 0})]
