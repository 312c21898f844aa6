"""Storage against a real S3 server (SeaweedFS on 127.0.0.1) and local folders."""

from __future__ import annotations

import os
import pickle
import stat
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fixtures_s3 import READ_ONLY

from labelsift.storage import (
    IMAGE_EXTENSIONS,
    ObjectInfo,
    Storage,
    StorageError,
    is_s3,
    join,
    relative_key,
    split_s3,
)
from labelsift_testing.s3_server import SeaweedS3Server, find_weed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024**2
LONG_KEY = "long/" + "/".join(c * 200 for c in "abcd") + "/" + "e" * 87 + ".jpg"
SPECIAL_KEYS = [
    "with space.jpg",
    "plus+sign.jpg",
    "percent%20encoded%2F.jpg",
    "hash#tag.jpg",
    "question?mark=1&x.jpg",
    "ünïcødé/日本語の写真 ☃.png",
    "deep/nested/folders/x.jpeg",
    LONG_KEY,
]


def put(client: S3Client, bucket: str, key: str, data: bytes) -> None:
    if data:
        client.put_object(Bucket=bucket, Key=key, Body=data)
    else:
        client.put_object(Bucket=bucket, Key=key)


def count_calls(storage: Storage, operation: str) -> list[str]:
    """Record each `operation` call the storage's S3 client makes."""
    calls: list[str] = []

    def record(**_: Any) -> None:
        calls.append(operation)

    for region in (None, "us-east-1"):
        storage.s3_client(region).meta.events.register(f"before-call.s3.{operation}", record)
    return calls


def test_long_key_is_900_characters() -> None:
    assert len(LONG_KEY) == 900
    assert max(len(part) for part in LONG_KEY.split("/")) <= 255


# --- URIs and keys ---------------------------------------------------------------------------


def test_uri_helpers() -> None:
    assert is_s3("s3://b/k") and not is_s3("/tmp/x") and not is_s3("S3:/x")
    assert split_s3("s3://bucket/a/b.jpg") == ("bucket", "a/b.jpg")
    assert split_s3("s3://bucket") == ("bucket", "")
    assert split_s3("s3://bucket/") == ("bucket", "")
    with pytest.raises(StorageError) as caught:
        split_s3("s3:///key")
    assert caught.value.code == "InvalidUri"
    assert join("s3://b", "k/x.jpg") == "s3://b/k/x.jpg"
    assert join("s3://b/pre/", "x.jpg") == "s3://b/pre/x.jpg"
    assert join("s3://b/pre", "../x.jpg") == "s3://b/pre/../x.jpg"
    assert relative_key("s3://b/pre", "s3://b/pre/a/x.jpg") == "a/x.jpg"
    assert relative_key("s3://b", "s3://b/a/x.jpg") == "a/x.jpg"
    assert relative_key("s3://b/pre/x.jpg", "s3://b/pre/x.jpg") == "x.jpg"
    with pytest.raises(StorageError):
        relative_key("s3://b/pre", "s3://b/prefix/x.jpg")
    with pytest.raises(StorageError):
        relative_key("s3://b/pre", "s3://other/pre/x.jpg")


def test_join_stays_inside_local_root(tmp_path: Path) -> None:
    root = str(tmp_path / "out")
    assert join(root, "a/b.jpg") == os.path.join(root, "a", "b.jpg")
    assert join(root, "/leading/slash.jpg") == os.path.join(root, "leading", "slash.jpg")
    assert join(root, "./a//b.jpg") == os.path.join(root, "a", "b.jpg")
    assert join("~/somewhere", "x.jpg") == os.path.join(os.path.expanduser("~/somewhere"), "x.jpg")
    assert relative_key(root, join(root, "a/b.jpg")) == "a/b.jpg"


@pytest.mark.parametrize(
    "key", ["../x.jpg", "a/../../x.jpg", "..", "a/..", "//../etc/passwd", "a\0b.jpg", ""]
)
def test_join_refuses_escapes(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError) as caught:
        join(str(tmp_path), key)
    assert caught.value.code == "UnsafePath"
    assert not caught.value.fatal


def test_join_refuses_symlink_escape(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(StorageError) as caught:
        join(str(root), "link/x.jpg")
    assert caught.value.code == "UnsafePath"


def test_relative_key_local(tmp_path: Path) -> None:
    assert relative_key(str(tmp_path), str(tmp_path / "a" / "b.jpg")) == "a/b.jpg"
    assert relative_key(str(tmp_path / "a.jpg"), str(tmp_path / "a.jpg")) == "a.jpg"
    with pytest.raises(StorageError):
        relative_key(str(tmp_path / "a"), str(tmp_path / "b" / "x.jpg"))


def test_image_extensions() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"} == IMAGE_EXTENSIONS


# --- Listing -----------------------------------------------------------------------------------


def _listing_keys(count: int) -> dict[str, bytes]:
    objects: dict[str, bytes] = {}
    for index in range(count):
        folder = f"set-{index % 7}/{'sub/' if index % 3 == 0 else ''}"
        extension = [".jpg", ".PNG", ".txt", ".jpeg", ".json"][index % 5]
        objects[f"{folder}img-{index:05d}{extension}"] = str(index).encode()
    return objects


def test_list_2500_objects_across_pages_in_sorted_order(
    s3_client: S3Client, storage: Storage, bucket: str
) -> None:
    objects = _listing_keys(2500)
    markers = ["set-0/", "set-1/sub/", "empty-folder/"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda item: put(s3_client, bucket, item[0], item[1]), objects.items()))
        list(pool.map(lambda key: put(s3_client, bucket, key, b""), markers))

    pages = count_calls(storage, "ListObjectsV2")
    everything = list(storage.list(f"s3://{bucket}", images_only=False))
    assert [info.key for info in everything] == sorted(objects)
    assert len(pages) >= 3
    assert all(info.uri == f"s3://{bucket}/{info.key}" for info in everything)
    assert all(info.size == len(objects[info.key]) for info in everything)
    assert all(info.etag and '"' not in info.etag for info in everything)
    assert {info.storage_class for info in everything} == {"STANDARD"}

    images = list(storage.list(f"s3://{bucket}"))
    expected_images = sorted(k for k in objects if os.path.splitext(k)[1].lower() in IMAGE_EXTENSIONS)
    assert [info.key for info in images] == expected_images
    assert len(images) == 1500

    pages.clear()
    first = next(iter(storage.list(f"s3://{bucket}")))
    assert first.key == expected_images[0]
    assert len(pages) == 1, "listing must stream page by page"

    sub = list(storage.list(f"s3://{bucket}/set-1/sub"))
    assert [info.key for info in sub] == sorted(
        k.removeprefix("set-1/sub/") for k in expected_images if k.startswith("set-1/sub/")
    )
    assert list(storage.list(f"s3://{bucket}/set-1/sub/")) == sub


def test_list_prefix_is_a_folder_and_a_single_object_is_its_own_root(
    s3_client: S3Client, storage: Storage, bucket: str
) -> None:
    for key in ["birds/a.jpg", "birds/b/c.png", "birds2/x.jpg", "birds.jpg", "lone/one.jpg"]:
        put(s3_client, bucket, key, b"data")
    assert [i.key for i in storage.list(f"s3://{bucket}/birds")] == ["a.jpg", "b/c.png"]
    single = list(storage.list(f"s3://{bucket}/lone/one.jpg"))
    assert [(i.uri, i.key, i.size) for i in single] == [(f"s3://{bucket}/lone/one.jpg", "one.jpg", 4)]
    assert relative_key(f"s3://{bucket}/lone/one.jpg", single[0].uri) == "one.jpg"
    assert list(storage.list(f"s3://{bucket}/nothing-here")) == []


def test_local_listing_matches_s3_order(
    s3_client: S3Client, storage: Storage, bucket: str, tmp_path: Path
) -> None:
    keys = ["a.jpg", "a-b.jpg", "a/b.jpg", "a/b/c.jpg", "a0.jpg", "B.jpg", "é.jpg", "z/.hidden.jpg", "n.txt"]
    for key in keys:
        put(s3_client, bucket, key, key.encode())
        target = tmp_path / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(key.encode())
    (tmp_path / "empty-dir").mkdir()

    s3_keys = [i.key for i in storage.list(f"s3://{bucket}", images_only=False)]
    local = list(storage.list(str(tmp_path), images_only=False))
    # AWS lists in UTF-8 byte order; SeaweedFS walks folders ('a/b/c.jpg' before 'a-b.jpg').
    # Local listings follow AWS, and each listing is stable from one run to the next.
    assert sorted(s3_keys) == sorted(keys)
    assert [i.key for i in storage.list(f"s3://{bucket}", images_only=False)] == s3_keys
    assert [i.key for i in local] == sorted(keys)
    assert [i.key for i in local] == sorted(keys, key=lambda k: k.encode())
    for info in local:
        assert info.uri == str(tmp_path / info.key)
        st = os.stat(info.uri)
        assert info.etag == f"{st.st_mtime_ns:x}-{st.st_size:x}"
        assert info.size == st.st_size
    assert "n.txt" not in [i.key for i in storage.list(str(tmp_path))]

    single = list(storage.list(str(tmp_path / "a" / "b.jpg")))
    assert [(i.key, i.uri) for i in single] == [("b.jpg", str(tmp_path / "a" / "b.jpg"))]


def test_local_listing_of_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        list(Storage().list(str(tmp_path / "missing")))
    assert caught.value.code == "NotFound"
    assert str(tmp_path / "missing") in str(caught.value)


# --- Special keys round trip -------------------------------------------------------------------


def test_special_keys_round_trip_everywhere(
    storage: Storage, make_bucket: Callable[[], str], tmp_path: Path
) -> None:
    source_bucket, copy_bucket, upload_bucket = make_bucket(), make_bucket(), make_bucket()
    contents = {key: f"payload of {key}".encode() for key in SPECIAL_KEYS}
    for key, data in contents.items():
        storage.write(join(f"s3://{source_bucket}", key), data)
    expected = sorted(contents)

    listed = list(storage.list(f"s3://{source_bucket}"))
    assert [i.key for i in listed] == expected
    for info in listed:
        assert storage.read(info.uri) == contents[info.key]
        assert storage.read_range(info.uri, 3, 5) == contents[info.key][3:8]
        assert storage.stat(info.uri).size == info.size
        assert relative_key(f"s3://{source_bucket}", info.uri) == info.key

    downloaded, copied_locally = tmp_path / "downloaded", tmp_path / "copied"
    for info in listed:
        assert storage.copy(info.uri, join(f"s3://{copy_bucket}", info.key))
        assert storage.copy(info.uri, join(str(downloaded), info.key))
        assert storage.copy(join(str(downloaded), info.key), join(str(copied_locally), info.key))
        assert storage.copy(join(str(copied_locally), info.key), join(f"s3://{upload_bucket}", info.key))

    for root in (f"s3://{copy_bucket}", str(downloaded), str(copied_locally), f"s3://{upload_bucket}"):
        round_tripped = list(storage.list(root))
        assert [i.key for i in round_tripped] == expected, root
        assert {i.key: storage.read(i.uri) for i in round_tripped} == contents


# --- Reads and writes --------------------------------------------------------------------------


def test_read_range_edges(storage: Storage, bucket: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4
    for uri in (f"s3://{bucket}/r.bin", str(tmp_path / "r.bin")):
        storage.write(uri, data)
        assert storage.read_range(uri, 0, 10) == data[:10]
        assert storage.read_range(uri, 1000, 100) == data[1000:]
        assert storage.read_range(uri, len(data), 10) == b""
        assert storage.read_range(uri, 5000, 10) == b""
        assert storage.read_range(uri, 3, 0) == b""
        assert storage.read(uri) == data


def test_write_creates_folders_atomically_and_handles_empty(
    storage: Storage, bucket: str, tmp_path: Path
) -> None:
    target = tmp_path / "new" / "deeper" / "x.jpg"
    storage.write(str(target), b"one")
    storage.write(str(target), b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.jpg"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask

    for uri in (f"s3://{bucket}/empty.jpg", str(tmp_path / "empty.jpg")):
        storage.write(uri, b"")
        assert storage.read(uri) == b""
        assert storage.stat(uri).size == 0
    storage.write(f"s3://{bucket}/after-empty.jpg", b"still fast")
    assert storage.read(f"s3://{bucket}/after-empty.jpg") == b"still fast"


def test_stat_and_exists(storage: Storage, bucket: str, tmp_path: Path) -> None:
    storage.write(f"s3://{bucket}/a/b.jpg", b"12345")
    info = storage.stat(f"s3://{bucket}/a/b.jpg")
    assert (info.uri, info.key, info.size, info.storage_class) == (
        f"s3://{bucket}/a/b.jpg",
        "a/b.jpg",
        5,
        "STANDARD",
    )
    assert info.etag == "827ccb0eea8a706c4c34a16891f84e7b"
    assert storage.exists(f"s3://{bucket}/a/b.jpg") == info
    assert storage.exists(f"s3://{bucket}/a/missing.jpg") is None

    path = tmp_path / "f.jpg"
    path.write_bytes(b"xyz")
    local = storage.stat(str(path))
    assert local == ObjectInfo(str(path), str(path), 3, local.etag)
    assert storage.exists(str(tmp_path / "missing.jpg")) is None
    assert storage.exists(str(tmp_path)) is None


# --- Copy ----------------------------------------------------------------------------------------


def test_multipart_copy_path(aws_env: dict[str, str], make_bucket: Callable[[], str]) -> None:
    source, destination = make_bucket(), make_bucket()
    data = os.urandom(6 * MiB)
    small_parts = Storage(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    small_parts.write(f"s3://{source}/big.bin", data)
    assert "-" not in (small_parts.stat(f"s3://{source}/big.bin").etag or "")

    parts = count_calls(small_parts, "UploadPartCopy")
    assert small_parts.copy(f"s3://{source}/big.bin", f"s3://{destination}/big.bin")
    copied = small_parts.stat(f"s3://{destination}/big.bin")
    assert copied.etag is not None and copied.etag.endswith("-2")
    assert len(parts) == 2
    assert small_parts.read(f"s3://{destination}/big.bin") == data

    single = Storage()
    assert single.copy(f"s3://{source}/big.bin", f"s3://{destination}/single.bin")
    assert "-" not in (single.stat(f"s3://{destination}/single.bin").etag or "")


def test_multipart_upload_and_download(aws_env: dict[str, str], bucket: str, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)
    storage = Storage(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    (tmp_path / "big.bin").write_bytes(data)
    assert storage.copy(str(tmp_path / "big.bin"), f"s3://{bucket}/big.bin")
    assert (storage.stat(f"s3://{bucket}/big.bin").etag or "").endswith("-2")
    assert storage.copy(f"s3://{bucket}/big.bin", str(tmp_path / "back" / "big.bin"))
    assert (tmp_path / "back" / "big.bin").read_bytes() == data
    assert [p.name for p in (tmp_path / "back").iterdir()] == ["big.bin"]


@pytest.mark.parametrize("kind", ["s3-s3", "s3-local", "local-s3", "local-local"])
def test_copy_is_idempotent_and_refuses_to_clobber(
    storage: Storage, make_bucket: Callable[[], str], tmp_path: Path, kind: str
) -> None:
    source_kind, destination_kind = kind.split("-")
    roots = {"s3": f"s3://{make_bucket()}", "local": str(tmp_path / "src")}
    src = join(roots[source_kind], "photo.jpg")
    dst_root = f"s3://{make_bucket()}" if destination_kind == "s3" else str(tmp_path / "dst")
    dst = join(dst_root, "photo.jpg")
    storage.write(src, b"original")

    assert storage.copy(src, dst) is True
    assert storage.copy(src, dst) is False
    assert storage.read(dst) == b"original"

    storage.write(dst, b"something else")
    with pytest.raises(StorageError) as caught:
        storage.copy(src, dst)
    assert caught.value.code == "Exists"
    assert not caught.value.fatal
    assert dst in str(caught.value)
    assert storage.read(dst) == b"something else"

    assert storage.copy(src, dst, overwrite=True) is True
    assert storage.read(dst) == b"original"


def test_copy_of_empty_local_file_to_s3(storage: Storage, bucket: str, tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert storage.copy(str(tmp_path / "empty.jpg"), f"s3://{bucket}/empty.jpg")
    assert storage.stat(f"s3://{bucket}/empty.jpg").size == 0
    assert storage.copy(str(tmp_path / "empty.jpg"), f"s3://{bucket}/empty.jpg") is False


def test_copy_missing_source(storage: Storage, bucket: str, tmp_path: Path) -> None:
    for src, code in [(f"s3://{bucket}/none.jpg", "NoSuchKey"), (str(tmp_path / "none.jpg"), "NotFound")]:
        for dst in (f"s3://{bucket}/copy.jpg", str(tmp_path / "out" / "copy.jpg")):
            with pytest.raises(StorageError) as caught:
                storage.copy(src, dst)
            assert caught.value.code == code, (src, dst)
            assert src in str(caught.value)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# --- Errors --------------------------------------------------------------------------------------


def test_wrong_secret_is_fatal_and_not_leaked(
    aws_env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Storage().write(f"s3://{bucket}/x.jpg", b"x")
    secret = "Wr0ngSecretKeyThatMustNotLeak"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    storage = Storage()
    operations: list[Callable[[], object]] = [
        lambda: list(storage.list(f"s3://{bucket}")),
        lambda: storage.read(f"s3://{bucket}/x.jpg"),
        lambda: storage.read_range(f"s3://{bucket}/x.jpg", 0, 10),
        lambda: storage.stat(f"s3://{bucket}/x.jpg"),
        lambda: storage.write(f"s3://{bucket}/y.jpg", b"y"),
    ]
    for operation in operations:
        with pytest.raises(StorageError) as caught:
            operation()
        error = caught.value
        assert error.code == "InvalidCredentials"
        assert error.fatal
        for text in (str(error), repr(error), error.message, str(error.__cause__ or "")):
            assert secret not in text
        assert "AWS_SECRET_ACCESS_KEY" in str(error)
        assert "\n" not in str(error)


def test_unknown_access_key_is_invalid_credentials(
    aws_env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    with pytest.raises(StorageError) as caught:
        Storage().read(f"s3://{bucket}/x.jpg")
    assert (caught.value.code, caught.value.fatal) == ("InvalidCredentials", True)


def test_missing_credentials(aws_env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError) as caught:
        Storage().read(f"s3://{bucket}/x.jpg")
    assert (caught.value.code, caught.value.fatal) == ("InvalidCredentials", True)
    assert "credentials" in str(caught.value)


def test_access_denied_is_fatal_but_readable_objects_still_read(
    aws_env: dict[str, str], bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Storage().write(f"s3://{bucket}/x.jpg", b"x")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", READ_ONLY.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", READ_ONLY.secret_key)
    storage = Storage()
    assert storage.read(f"s3://{bucket}/x.jpg") == b"x"
    for operation in (
        lambda: list(storage.list(f"s3://{bucket}")),
        lambda: storage.write(f"s3://{bucket}/y.jpg", b"y"),
    ):
        with pytest.raises(StorageError) as caught:
            operation()
        assert (caught.value.code, caught.value.fatal) == ("AccessDenied", True)
        assert f"'{bucket}'" in str(caught.value)
        assert READ_ONLY.secret_key not in str(caught.value)


def test_missing_bucket_and_key(storage: Storage, bucket: str) -> None:
    missing_bucket = f"{bucket}-absent"
    for operation in (
        lambda: list(storage.list(f"s3://{missing_bucket}")),
        lambda: storage.read(f"s3://{missing_bucket}/x.jpg"),
        lambda: storage.stat(f"s3://{missing_bucket}/x.jpg"),
        lambda: storage.exists(f"s3://{missing_bucket}/x.jpg"),
        lambda: storage.write(f"s3://{missing_bucket}/x.jpg", b"x"),
    ):
        with pytest.raises(StorageError) as caught:
            operation()
        assert (caught.value.code, caught.value.fatal) == ("NoSuchBucket", True)
        assert missing_bucket in str(caught.value)

    for operation in (
        lambda: storage.read(f"s3://{bucket}/missing.jpg"),
        lambda: storage.read_range(f"s3://{bucket}/missing.jpg", 0, 10),
        lambda: storage.stat(f"s3://{bucket}/missing.jpg"),
    ):
        with pytest.raises(StorageError) as caught:
            operation()
        assert (caught.value.code, caught.value.fatal) == ("NoSuchKey", False)
        assert f"s3://{bucket}/missing.jpg" in str(caught.value)


def test_local_errors(tmp_path: Path) -> None:
    storage = Storage()
    with pytest.raises(StorageError) as caught:
        storage.read(str(tmp_path / "missing.jpg"))
    assert caught.value.code == "NotFound"
    with pytest.raises(StorageError) as caught:
        storage.read(str(tmp_path))
    assert caught.value.code == "NotFound"
    with pytest.raises(StorageError) as caught:
        storage.stat(str(tmp_path))
    assert caught.value.code == "NotFound"


def test_storage_error_pickles() -> None:
    error = StorageError("NoSuchBucket", "s3://b/k", "Bucket b is gone.", fatal=True)
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.code, clone.uri, clone.message, clone.fatal, str(clone)) == (
        "NoSuchBucket",
        "s3://b/k",
        "Bucket b is gone.",
        True,
        "Bucket b is gone.",
    )


# --- Clients and regions -------------------------------------------------------------------------


def test_region_is_looked_up_once_and_clients_are_shared(storage: Storage, bucket: str) -> None:
    lookups = count_calls(storage, "GetBucketLocation")
    regions: list[str] = []
    clients: list[object] = []

    def work() -> None:
        regions.append(storage.bucket_region(bucket))
        clients.append(storage.s3_client("us-east-1"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(regions) == {"us-east-1"}
    assert len({id(client) for client in clients}) == 1
    assert 1 <= len(lookups) <= 8
    lookups.clear()
    storage.bucket_region(bucket)
    assert lookups == []
    config: Any = storage.s3_client().meta.config
    assert config.retries["mode"] == "standard"
    assert config.retries["total_max_attempts"] == 6
    assert config.max_pool_connections == 50


def test_endpoint_comes_from_standard_aws_config(
    storage: Storage, aws_env: dict[str, str], s3_server: SeaweedS3Server
) -> None:
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    assert aws_env["AWS_ENDPOINT_URL_S3"] == s3_server.endpoint_url
    assert storage.s3_client().meta.endpoint_url == s3_server.endpoint_url
    assert os.access(find_weed(), os.X_OK)


def test_reading_a_fifo_or_device_is_refused_not_blocked(tmp_path: Path) -> None:
    """Opening a FIFO blocked for ever (the review page and the report hung on one); a link to
    /dev/zero never ended. Every local read now refuses what is not a regular file."""
    fifo, zero = tmp_path / "fifo.jpg", tmp_path / "zero.jpg"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero):
        with pytest.raises(StorageError) as caught:
            Storage().open_read(str(path), limit=1024)
        assert caught.value.code == "NotAFile" and str(path) in str(caught.value)
