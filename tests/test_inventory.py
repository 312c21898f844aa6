"""S3 Inventory as the source of a scan: reports in the documented layout (CSV.gz, Parquet, ORC)
made in the real S3 server, hostile keys, versions and delete markers; no ListObjects call."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from inventory_layout import Row, rows_of_listing, write_inventory
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.errors import CannotProceed, UsageError
from labelsift.inventory import (
    InventoryError,
    InventoryMismatch,
    iter_inventory,
    iter_objects,
    list_source,
    open_inventory,
)
from labelsift.listing import ListingNotes
from labelsift.manifest import iter_records
from labelsift.storage import Storage
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FORMATS = ["CSV", "Parquet", "ORC"]
HOSTILE = [
    "deep/a/b/c/d/e/f/g/h/i/j/k/photo.jpg",
    "with space/a b.jpg",
    "plus+sign/a+b+.jpg",
    "percent/100%25 real %.jpg",
    "unicode/ünïcødé 鳥.jpg",
    'quote/"quoted",comma.jpg',
    "emoji/🐦.png",
    "tilde~/x.JPEG",
    "amp&eq=/q?x=1#frag.jpg",
    "newline/line\nbreak.jpg",
    "notimage/readme.txt",
    "plain/0001.jpg",
    "plain/0002.jpg",
]


def _put_hostile(client: S3Client, bucket: str) -> list[str]:
    """The hostile keys the server stores (each put, then read back by its key), plus a folder marker."""
    kept = []
    for i, key in enumerate(HOSTILE):
        body = make_image(["bird", "dog", "car"][i % 3], confidence=90.0, seed=i)
        client.put_object(Bucket=bucket, Key=key, Body=body)
        if client.get_object(Bucket=bucket, Key=key)["Body"].read() == body:
            kept.append(key)
    client.put_object(Bucket=bucket, Key="plain/")  # a folder marker
    return kept


def _listing(
    storage: Storage, source: str, *, images_only: bool = True
) -> set[tuple[str, str, int, str | None]]:
    return {(i.uri, i.key, i.size, i.etag) for i in storage.list(source, images_only=images_only)}


@pytest.fixture
def no_listing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every S3 client labelsift makes refuses ListObjects/ListObjectsV2 (and records the attempt)."""
    attempts: list[str] = []
    original = Storage.s3_client

    def refuse(**kwargs: Any) -> None:
        attempts.append(str(kwargs.get("model", "list").name))
        raise AssertionError("a ListObjects call was made although an inventory was given")

    def client(self: Storage, region: str | None = None) -> Any:
        made = original(self, region)
        for name in ("ListObjectsV2", "ListObjects"):
            made.meta.events.register(f"before-call.s3.{name}", refuse, unique_id=f"no-{name}")
        return made

    monkeypatch.setattr(Storage, "s3_client", client)
    return attempts


@pytest.mark.parametrize("fmt", FORMATS)
def test_inventory_gives_exactly_the_listings_objects(
    fmt: str, s3_client: S3Client, make_bucket: Callable[[], str], storage: Storage
) -> None:
    source, dest = make_bucket(), make_bucket()
    kept = _put_hostile(s3_client, source)
    assert "unicode/ünïcødé 鳥.jpg" in kept and "plus+sign/a+b+.jpg" in kept
    rows = rows_of_listing(s3_client, source)
    assert any(not r.is_latest for r in rows) and any(r.is_delete_marker for r in rows)
    manifest = write_inventory(s3_client, dest, source, rows, fmt)

    every = {(i.uri, i.size, i.etag) for i in iter_inventory(storage, manifest) if not i.uri.endswith("/")}
    listed = {(i.uri, i.size, i.etag) for i in storage.list(f"s3://{source}/", images_only=False)}
    assert every == listed
    assert len(every) == len(kept)
    # what a scan of the bucket and of a prefix sees: the listing's objects, keys and notes
    for where in (f"s3://{source}/", f"s3://{source}/plain/", f"s3://{source}/deep/a"):
        notes, listing_notes = ListingNotes(), ListingNotes()
        from_inventory = {
            (i.uri, i.key, i.size, i.etag) for i in list_source(storage, manifest, where, notes=notes)
        }
        expected = {(i.uri, i.key, i.size, i.etag) for i in storage.list(where, notes=listing_notes)}
        assert from_inventory == expected, where
        assert from_inventory
        assert notes.formats == listing_notes.formats
        assert notes.reasons == listing_notes.reasons


def test_the_marker_row_and_etags_match_the_server(
    s3_client: S3Client, make_bucket: Callable[[], str], storage: Storage
) -> None:
    """The exact (key, size, ETag) set, folder marker included, against the server's own listing."""
    source, dest = make_bucket(), make_bucket()
    _put_hostile(s3_client, source)
    paginator = s3_client.get_paginator("list_objects_v2")
    real = {
        (f"s3://{source}/{o['Key']}", o["Size"], o["ETag"].strip('"'))
        for page in paginator.paginate(Bucket=source)
        for o in page.get("Contents", [])
    }
    for fmt in FORMATS:
        manifest = write_inventory(s3_client, dest, source, rows_of_listing(s3_client, source), fmt)
        assert {(i.uri, i.size, i.etag) for i in iter_inventory(storage, manifest)} == real, fmt


def test_prefix_filter_and_relative_keys(
    s3_client: S3Client, make_bucket: Callable[[], str], storage: Storage
) -> None:
    source, dest = make_bucket(), make_bucket()
    _put_hostile(s3_client, source)
    manifest = write_inventory(s3_client, dest, source, rows_of_listing(s3_client, source), "CSV", files=2)
    inventory = open_inventory(storage, manifest, "with space/")
    got = [info for file in inventory.files for info in iter_objects(storage, inventory, file)]
    assert [(i.uri, i.key) for i in got] == [(f"s3://{source}/with space/a b.jpg", "a b.jpg")]
    assert inventory.source_bucket == source and inventory.destination_bucket == dest
    assert inventory.file_format == "CSV" and "ETag" in inventory.columns and len(inventory.files) == 2


def _scan(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


def _comparable(path: Path) -> dict[str, dict[str, Any]]:
    return {r.source: r.model_dump(exclude={"scanned_at"}) for r in iter_records(str(path))}


@pytest.mark.parametrize("fmt", FORMATS)
def test_scan_with_inventory_makes_the_listing_scans_records_without_listing(
    fmt: str,
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    source, dest = make_bucket(), make_bucket()
    _put_hostile(s3_client, source)
    manifest = write_inventory(s3_client, dest, source, rows_of_listing(s3_client, source), fmt)
    listed = _scan(["scan", f"s3://{source}/", "-o", str(tmp_path / "listed.jsonl"), "-d", "rekognition"])
    assert listed.exit_code == 0, listed.output
    calls = fake_rekognition_s3.calls_total
    attempts = request.getfixturevalue("no_listing")
    out = tmp_path / "inventory.jsonl"
    result = _scan(["scan", f"s3://{source}/", "-o", str(out), "-d", "rekognition", "--inventory", manifest])
    assert result.exit_code == 0, result.output
    assert attempts == []
    assert _comparable(out) == _comparable(tmp_path / "listed.jsonl")
    assert len(_comparable(out)) >= 10
    assert fake_rekognition_s3.calls_total == 2 * calls
    again = _scan(["scan", f"s3://{source}/", "-o", str(out), "-d", "rekognition", "--inventory", manifest])
    assert again.exit_code == 0, again.output
    assert fake_rekognition_s3.calls_total == 2 * calls  # resumed: nothing paid twice
    assert attempts == []


def test_estimate_and_filter_with_inventory(
    fake_rekognition_s3: FakeRekognition,
    s3_client: S3Client,
    make_bucket: Callable[[], str],
    tmp_path: Path,
    no_listing: list[str],
) -> None:
    source, dest, clean = make_bucket(), make_bucket(), make_bucket()
    kept = _put_hostile(s3_client, source)
    manifest = write_inventory(s3_client, dest, source, rows_of_listing(s3_client, source), "Parquet")
    images = [k for k in kept if not k.endswith(".txt")]
    estimate = _scan(["estimate", f"s3://{source}/", "--inventory", manifest])
    assert estimate.exit_code == 0, estimate.output
    assert f"{len(images)} images" in estimate.output
    result = _scan(
        ["filter", f"s3://{source}/", f"s3://{clean}/out", "-l", "bird", "-d", "rekognition",
         "--manifest", str(tmp_path / "f.jsonl"), "--inventory", manifest]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    hits = {
        r.source for r in iter_records(str(tmp_path / "f.jsonl")) if any(x.name == "Bird" for x in r.labels)
    }
    assert hits
    copied = {o["Key"] for o in s3_client.list_objects_v2(Bucket=clean).get("Contents", [])}
    assert copied == {f"out/bird/{s.split('/', 3)[3]}" for s in hits}
    assert no_listing == []


def _manifest_json(s3_client: S3Client, uri: str) -> dict[str, Any]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return dict(json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()))


def _put(s3_client: S3Client, uri: str, body: bytes) -> None:
    bucket, _, key = uri[len("s3://") :].partition("/")
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture
def small_inventory(s3_client: S3Client, make_bucket: Callable[[], str]) -> tuple[str, str, str]:
    source, dest = make_bucket(), make_bucket()
    s3_client.put_object(Bucket=source, Key="a.jpg", Body=b"x" * 10)
    return source, dest, write_inventory(s3_client, dest, source, rows_of_listing(s3_client, source), "CSV")


def test_refuses_an_inventory_of_another_bucket(
    small_inventory: tuple[str, str, str], make_bucket: Callable[[], str], storage: Storage, tmp_path: Path
) -> None:
    source, _, manifest = small_inventory
    other = make_bucket()
    with pytest.raises(InventoryMismatch, match=f"inventory of bucket '{source}', not of '{other}'"):
        list(list_source(storage, manifest, f"s3://{other}/"))
    result = _scan(["estimate", f"s3://{other}/", "--inventory", manifest])
    assert result.exit_code == 2, result.output
    assert isinstance(InventoryMismatch("x"), UsageError)


def test_refuses_a_checksum_mismatch(
    small_inventory: tuple[str, str, str], s3_client: S3Client, storage: Storage
) -> None:
    source, _, manifest = small_inventory
    _put(s3_client, manifest.rsplit("/", 1)[0] + "/manifest.checksum", b"0" * 32)
    with pytest.raises(InventoryError, match=r"manifest\.checksum says .0000"):
        open_inventory(storage, manifest)
    assert _scan(["estimate", f"s3://{source}/", "--inventory", manifest]).exit_code == 3


def test_refuses_an_unknown_format_a_missing_file_and_a_damaged_one(
    small_inventory: tuple[str, str, str], s3_client: S3Client, storage: Storage
) -> None:
    source, dest, manifest = small_inventory
    body = _manifest_json(s3_client, manifest)
    folder = manifest.rsplit("/", 1)[0]
    s3_client.delete_object(Bucket=dest, Key=folder.split("/", 3)[3] + "/manifest.checksum")
    _put(s3_client, manifest, json.dumps({**body, "fileFormat": "Avro"}).encode())
    with pytest.raises(InventoryError, match="fileFormat 'Avro' is not one labelsift reads"):
        open_inventory(storage, manifest)
    missing = {**body, "files": [*body["files"], {"key": "nope/gone.csv.gz", "size": 3, "MD5checksum": "ab"}]}
    _put(s3_client, manifest, json.dumps(missing).encode())
    with pytest.raises(InventoryError, match=f"s3://{dest}/nope/gone.csv.gz, which does not exist"):
        list(iter_inventory(storage, manifest))
    first = body["files"][0]
    _put(s3_client, f"s3://{dest}/{first['key']}", b"\x1f\x8b not what was listed")
    _put(s3_client, manifest, json.dumps(body).encode())
    with pytest.raises(InventoryError, match="changed or cut short"):
        list(iter_inventory(storage, manifest))
    no_etag = {**body, "fileSchema": "Bucket, Key, Size"}
    _put(s3_client, manifest, json.dumps(no_etag).encode())
    with pytest.raises(InventoryError, match="has no ETag column"):
        open_inventory(storage, manifest)
    result = _scan(
        ["scan", f"s3://{source}/", "-o", "/dev/null/x.jsonl", "--inventory", f"s3://{dest}/none.json"]
    )
    assert result.exit_code in (2, 3)
    assert issubclass(InventoryError, CannotProceed)


def test_csv_needs_no_pyarrow_and_parquet_says_what_to_install(
    s3_client: S3Client, make_bucket: Callable[[], str], storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, dest = make_bucket(), make_bucket()
    s3_client.put_object(Bucket=source, Key="a.jpg", Body=b"x" * 10)
    rows = rows_of_listing(s3_client, source)
    csv_manifest = write_inventory(s3_client, dest, source, rows, "CSV")
    parquet_manifest = write_inventory(s3_client, dest, source, rows, "Parquet")
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    assert [i.uri for i in iter_inventory(storage, csv_manifest)] == [f"s3://{source}/a.jpg"]
    with pytest.raises(InventoryError, match=r"pip install 'labelsift\[inventory\]'"):
        list(iter_inventory(storage, parquet_manifest))


def test_rows_that_are_not_current_are_never_yielded(
    s3_client: S3Client, make_bucket: Callable[[], str], storage: Storage
) -> None:
    source, dest = make_bucket(), make_bucket()
    rows = [
        Row("kept.jpg", 5, "a" * 32),
        Row("old.jpg", 6, "b" * 32, is_latest=False),
        Row("dm.jpg", None, None, is_delete_marker=True),
        Row("k%2Fey with+plus.jpg", 7, '"' + "c" * 32 + '"'),
    ]
    for fmt in FORMATS:
        manifest = write_inventory(s3_client, dest, source, rows, fmt, files=2)
        got = sorted((i.key, i.size, i.etag) for i in iter_inventory(storage, manifest))
        assert got == [("k%2Fey with+plus.jpg", 7, "c" * 32), ("kept.jpg", 5, "a" * 32)], fmt


def test_a_local_copy_of_a_report_reads_the_same(
    s3_client: S3Client, make_bucket: Callable[[], str], storage: Storage, tmp_path: Path
) -> None:
    """`aws s3 sync s3://DEST ./dest` keeps the keys: the copy's manifest finds its files beside it."""
    source, dest = make_bucket(), make_bucket()
    _put_hostile(s3_client, source)
    manifest = write_inventory(s3_client, dest, source, rows_of_listing(s3_client, source), "ORC")
    for item in s3_client.list_objects_v2(Bucket=dest)["Contents"]:
        target = tmp_path / "dest" / item["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3_client.get_object(Bucket=dest, Key=item["Key"])["Body"].read())
    local = tmp_path / "dest" / manifest.split("/", 3)[3]
    from_s3 = {(i.uri, i.size, i.etag) for i in iter_inventory(storage, manifest)}
    assert {(i.uri, i.size, i.etag) for i in iter_inventory(storage, str(local))} == from_s3
    moved = tmp_path / "elsewhere" / "manifest.json"
    moved.parent.mkdir()
    moved.write_bytes(local.read_bytes())
    with pytest.raises(InventoryError, match="not in the documented layout"):
        open_inventory(storage, str(moved))
