"""Issue #14, the exports' part: exports own their outputs (receipts), write them whole, never read
a source outside the canonical form a scan records, and never write through a link.

Every test goes through the command line, against real files, the real S3 server and real mounts.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sandbox
from export_cli import RECEIPT, bird, cli, said, scanned
from export_cli import manifest as manifest  # fixture: a manifest of the three photos
from export_cli import photos as photos  # fixture: three small JPEGs
from export_cli import wide_console as wide_console  # autouse: long paths on one line
from manifest_builders import box, label, record, write_manifest
from PIL import Image
from pycocotools.coco import COCO

from labelsift.cli import ExitCode
from labelsift.models import ImageRecord
from labelsift.storage import Storage

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def jpeg_bytes(color: tuple[int, int, int], size: int | None = None) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 90), color).save(out, "JPEG")
    data = out.getvalue()
    if size is not None:  # bytes after the end-of-image marker: still the same picture
        assert len(data) <= size
        data += b"\0" * (size - len(data))
    return data


# -- finding 3: --overwrite deletes only what a receipt lists ----------------------------------------


def test_overwrite_leaves_a_handmade_yolo_set_alone(tmp_path: Path, manifest: str) -> None:
    dest = tmp_path / "handmade"
    mine = {"images/train/mine.jpg": b"my own image", "labels/train/mine.txt": b"0 0.5 0.5 0.1 0.1\n"}
    for rel, data in mine.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    (dest / "data.yaml").write_text("names: {0: mine}\n")
    before = tree(dest)

    # data.yaml is a name the export must write: a clash, exit 3, naming it; nothing written
    for extra in ([], ["--overwrite"]):
        clash = cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--val", "0", *extra)
        assert clash.exit_code == ExitCode.CANNOT_PROCEED, clash.output
        assert f"{dest / 'data.yaml'} is in the way" in said(clash) and "move it away" in said(clash)
        assert "Traceback" not in clash.output
        assert tree(dest) == before and sorted(os.listdir(dest)) == ["data.yaml", "images", "labels"]

    (dest / "data.yaml").unlink()
    first = cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--val", "0")
    assert first.exit_code == ExitCode.OK, first.output
    again = cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--val", "0", "--overwrite")
    assert again.exit_code == ExitCode.OK, again.output
    for rel, data in mine.items():  # the user's files survive both exports
        assert (dest / rel).read_bytes() == data
    receipt = [json.loads(line) for line in (dest / RECEIPT).read_text().splitlines()]
    assert receipt[0]["kind"] == "labelsift-export-receipt" and receipt[0]["format"] == "yolo"
    listed = {entry["path"] for entry in receipt[1:]}
    assert len(listed) == 3 + 3 + 1 and not listed & set(mine)  # images, labels, data.yaml
    assert all(entry["size"] == (dest / entry["path"]).stat().st_size for entry in receipt[1:])


def test_overwrite_spares_unrelated_files_in_voc_and_other_label_folders(
    tmp_path: Path, photos: list[Path]
) -> None:
    dest = tmp_path / "voc"
    (dest / "JPEGImages").mkdir(parents=True)
    (dest / "JPEGImages" / "holiday.jpg").write_bytes(b"not labelsift's")
    (dest / "notes").mkdir()
    (dest / "notes" / "todo.txt").write_text("keep me")
    all_three = write_manifest(tmp_path / "all.jsonl", [bird(p) for p in photos])
    one = write_manifest(tmp_path / "one.jsonl", [bird(photos[0])])
    assert cli("export", "voc", all_three, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    replaced = cli("export", "voc", one, str(dest), "--label", "Bird", "--overwrite")
    assert replaced.exit_code == ExitCode.OK, replaced.output
    assert (dest / "JPEGImages" / "holiday.jpg").read_bytes() == b"not labelsift's"
    assert (dest / "notes" / "todo.txt").read_text() == "keep me"
    assert len(list((dest / "Annotations").iterdir())) == 1  # the earlier export's other two are gone
    assert len(list((dest / "JPEGImages").iterdir())) == 2  # holiday.jpg and the one image


def test_a_receipt_never_deletes_outside_the_destination(tmp_path: Path, manifest: str) -> None:
    dest = tmp_path / "coco"
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    assert cli("export", "coco", manifest, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    receipt = dest / RECEIPT
    lines = receipt.read_text().splitlines()
    for bad in ("../precious.txt", str(outside), "annotations/../../precious.txt"):
        lines.append(json.dumps({"path": bad, "size": 4}))
    receipt.write_text("\n".join(lines) + "\n")
    again = cli("export", "coco", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert again.exit_code == ExitCode.OK, again.output
    assert outside.read_text() == "keep"

    receipt.write_text('{"kind": "something-else"}\n{"path": "annotations", "size": 1}\n')
    untrusted = cli("export", "coco", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert untrusted.exit_code == ExitCode.CANNOT_PROCEED, untrusted.output
    assert "is not a labelsift export receipt" in said(untrusted) and str(receipt) in said(untrusted)
    assert (dest / "annotations" / "instances_train.json").exists()


# -- finding 9: Custom Labels keys do not move when the manifest grows -------------------------------


def test_custom_labels_keys_stay_when_a_second_bucket_enters(
    tmp_path: Path, make_bucket: Callable[[], str], s3_client: S3Client, aws_env: dict[str, str]
) -> None:
    birds, raw, dest_bucket = make_bucket(), make_bucket(), make_bucket()
    records = []
    for bucket, key in ((birds, "eagle.jpg"), (raw, "birds/eagle.jpg")):
        etag = s3_client.put_object(Bucket=bucket, Key=key, Body=jpeg_bytes((9, 9, 9)))["ETag"].strip('"')
        records.append(record(f"s3://{bucket}/{key}", label("Bird", 90)).model_copy(update={"etag": etag}))
    dest = f"s3://{dest_bucket}/cl"
    first = write_manifest(tmp_path / "first.jsonl", records[:1])
    assert cli("export", "custom-labels", first, dest, "--label", "Bird").exit_code == ExitCode.OK
    grown = write_manifest(tmp_path / "grown.jsonl", records)
    result = cli("export", "custom-labels", grown, dest, "--label", "Bird", "--overwrite")
    assert result.exit_code == ExitCode.OK, result.output
    assert "1 copied, 1 already there" in said(result)
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=dest_bucket)["Contents"]}
    assert keys == {f"cl/Bird/{birds}/eagle.jpg", f"cl/Bird/{raw}/birds/eagle.jpg", f"cl/{RECEIPT}"}
    assert "images from: " in said(result)
    assert f"s3://{birds}/ (1)" in said(result) and f"s3://{raw}/ (1)" in said(result)


# -- finding 4: a replaced image of the same size is copied again -----------------------------------


def test_a_replaced_image_of_the_same_size_is_copied_again(
    tmp_path: Path, make_bucket: Callable[[], str], s3_client: S3Client, aws_env: dict[str, str]
) -> None:
    src, dest_bucket = make_bucket(), make_bucket()
    old, new = jpeg_bytes((250, 0, 0), 2000), jpeg_bytes((0, 0, 250), 2000)
    assert len(old) == len(new) and old != new

    def scan_of(data: bytes) -> str:
        etag = s3_client.put_object(Bucket=src, Key="bird.jpg", Body=data)["ETag"].strip('"')
        made = record(
            f"s3://{src}/bird.jpg", label("Bird", 90, box(0.1, 0.1, 0.5, 0.5)), width=120, height=90
        )
        return write_manifest(tmp_path / "m.jsonl", [made.model_copy(update={"etag": etag, "size": 2000})])

    local = tmp_path / "yolo"
    for dest in (f"s3://{dest_bucket}/cl", str(local)):
        command = "custom-labels" if dest.startswith("s3://") else "yolo"
        manifest = scan_of(old)
        assert cli("export", command, manifest, dest, "--label", "Bird").exit_code == ExitCode.OK
        manifest = scan_of(new)  # the rescan records the new etag
        again = cli("export", command, manifest, dest, "--label", "Bird", "--overwrite")
        assert again.exit_code == ExitCode.OK, again.output
        assert "1 copied, 0 already there" in said(again), again.output
    copy = s3_client.get_object(Bucket=dest_bucket, Key=f"cl/Bird/{src}/bird.jpg")["Body"].read()
    assert copy == new
    (image,) = [p for p in (local / "images").rglob("*.jpg")]
    assert image.read_bytes() == new


# -- findings 2 (export part), 13: outputs whole, inputs never outputs, no debris -------------------


def test_an_export_whose_output_is_its_manifest_is_refused(tmp_path: Path, manifest: str) -> None:
    before = Path(manifest).read_bytes()
    os.link(manifest, tmp_path / "hard.jsonl")
    for output in (manifest, str(tmp_path / "hard.jsonl")):
        for command in (["groundtruth"], ["review", "--allow-local"]):
            result = cli("export", *command, manifest, output, "--label", "Bird", "--overwrite")
            assert result.exit_code == ExitCode.USAGE, result.output
            assert "is the manifest this export reads" in said(result)
    assert Path(manifest).read_bytes() == before


def test_a_failed_export_leaves_no_debris_and_the_rerun_needs_no_overwrite(
    tmp_path: Path, photos: list[Path]
) -> None:
    bad_line = '{"source": "s3://b/x.jpg", "status": "labeled", "width": 0, "labels": [{"name": "Bird"}]}'

    def with_a_bad_line(path: Path, records: list[ImageRecord]) -> str:
        write_manifest(path, records)
        lines = path.read_text().splitlines()
        path.write_text("\n".join([lines[0], bad_line, *lines[1:]]) + "\n")
        return str(path)

    in_s3 = [record(f"s3://b/{i}.jpg", label("Bird", 90, box(0, 0, 1, 1))) for i in range(3)]
    local = [bird(p) for p in photos]
    gt, voc = tmp_path / "out" / "gt.manifest", tmp_path / "voc"
    bad_gt = cli(
        "export", "groundtruth", with_a_bad_line(tmp_path / "s3.jsonl", in_s3), str(gt), "--label", "Bird"
    )
    bad_voc = cli("export", "voc", with_a_bad_line(tmp_path / "m.jsonl", local), str(voc), "--label", "Bird")
    for bad in (bad_gt, bad_voc):
        assert bad.exit_code == ExitCode.BAD_MANIFEST, bad.output
        assert "line 2" in said(bad)
    assert os.listdir(gt.parent) == []  # no empty GT manifest, no receipt, no staging
    assert os.listdir(voc) == []  # no partial ImageSets/
    # the cause is fixed: the reruns need no --overwrite
    write_manifest(tmp_path / "s3.jsonl", in_s3)
    write_manifest(tmp_path / "m.jsonl", local)
    assert cli("export", "groundtruth", str(tmp_path / "s3.jsonl"), str(gt), "--label", "Bird").exit_code == 0
    assert len(gt.read_text().splitlines()) == 3
    assert cli("export", "voc", str(tmp_path / "m.jsonl"), str(voc), "--label", "Bird").exit_code == 0
    assert (
        len((voc / "ImageSets" / "Main" / "train.txt").read_text().split())
        + len((voc / "ImageSets" / "Main" / "val.txt").read_text().split())
        == 3
    )


def test_ctrl_c_during_an_overwrite_leaves_the_earlier_export(
    tmp_path: Path, photos: list[Path], manifest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "yolo"
    assert cli("export", "yolo", manifest, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    earlier = tree(dest)
    real_copy = Storage.copy
    calls: list[str] = []

    def copy_then_ctrl_c(self: Storage, src: str, dst: str, *, overwrite: bool = False) -> bool:
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_copy(self, src, dst, overwrite=overwrite)

    for p in photos:  # new versions: every image is copied again
        os.utime(p, ns=(1, 1))
    fewer = write_manifest(
        tmp_path / "fewer.jsonl", [scanned(p, label("Bird", 99, box(0.2, 0.2, 0.2, 0.2))) for p in photos]
    )
    monkeypatch.setattr(Storage, "copy", copy_then_ctrl_c)
    stopped = cli("export", "yolo", fewer, str(dest), "--label", "Bird", "--overwrite")
    assert stopped.exit_code == ExitCode.INTERRUPTED, stopped.output
    assert tree(dest) == earlier  # byte for byte, the receipt too; no staging folder left
    monkeypatch.setattr(Storage, "copy", real_copy)
    again = cli("export", "yolo", fewer, str(dest), "--label", "Bird", "--overwrite")
    assert again.exit_code == ExitCode.OK, again.output
    assert tree(dest) != earlier and not any(p.name.startswith(".labelsift-staging") for p in dest.iterdir())


def test_a_second_export_into_a_destination_in_use_stops(tmp_path: Path, manifest: str) -> None:
    dest = tmp_path / "coco"
    staging = dest / ".labelsift-staging-export-0123456789ab"  # as a running export has it
    (staging / "annotations").mkdir(parents=True)
    with open(dest / ".labelsift-lock-export", "w") as lock:  # held as a running export holds it
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        busy = cli("export", "coco", manifest, str(dest), "--label", "Bird")
        assert busy.exit_code == ExitCode.CANNOT_PROCEED, busy.output
        assert "another labelsift export (pid 4242) is writing" in said(busy)
        assert staging.exists()  # a running export's work is never taken for debris
    # the holder died: its staging folder is debris, removed by the next export
    assert cli("export", "coco", manifest, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    assert not staging.exists()


def test_a_planted_link_at_the_lock_is_not_followed(tmp_path: Path, manifest: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("intact")
    dest = tmp_path / "coco"
    dest.mkdir()
    (dest / ".labelsift-lock-export").symlink_to(victim)
    result = cli("export", "coco", manifest, str(dest), "--label", "Bird")
    assert result.exit_code == ExitCode.CANNOT_PROCEED, result.output
    assert victim.read_text() == "intact"


# -- finding 11 and disk full: stop at once, leave nothing ------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` unwritable, for root too (the immutable attribute) or by its mode otherwise."""
    folder.chmod(0o555)
    probe = folder / ".probe"
    try:
        probe.touch()
    except PermissionError:
        pass
    else:
        probe.unlink()
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            folder.chmod(0o755)
            pytest.skip("cannot make a folder read-only here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


@pytest.mark.parametrize("command", ["custom-labels", "coco", "yolo", "voc", "groundtruth"])
def test_a_read_only_destination_stops_at_once(tmp_path: Path, manifest: str, command: str) -> None:
    dest = tmp_path / "ro"
    dest.mkdir()
    target = str(dest / "gt.manifest") if command == "groundtruth" else str(dest)
    s3_manifest = write_manifest(
        tmp_path / "s3.jsonl", [record("s3://b/a.jpg", label("Bird", 90, box(0, 0, 1, 1)))]
    )
    with read_only(dest):
        result = cli(
            "export",
            command,
            s3_manifest if command == "groundtruth" else manifest,
            target,
            "--label",
            "Bird",
        )
    assert result.exit_code == ExitCode.CANNOT_PROCEED, result.output
    assert f"cannot write {dest}" in said(result) and "permission denied" in said(result).lower()
    assert os.listdir(dest) == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    with sandbox.tiny_disk(tmp_path / "tiny") as mount:
        yield mount


def test_a_full_disk_during_a_coco_export_leaves_nothing_new(tmp_path: Path, tiny_disk: Path) -> None:
    records = [
        record(f"s3://b/{i:05d}.jpg", label("Bird", 90, *(box(j / 20, 0, 0.04, 0.5) for j in range(20))))
        for i in range(300)
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    (tiny_disk / "earlier.txt").write_text("here before")
    result = cli("export", "coco", manifest, str(tiny_disk / "coco"), "--label", "Bird", "--no-copy-images")
    assert result.exit_code == ExitCode.CANNOT_PROCEED, result.output
    assert "no space left" in said(result)
    assert sorted(os.listdir(tiny_disk)) == ["coco", "earlier.txt"] and os.listdir(tiny_disk / "coco") == []


def test_a_missing_bucket_for_an_output_file_is_named(manifest: str, aws_env: dict[str, str]) -> None:
    for command in (["groundtruth"], ["review", "--allow-local"]):
        result = cli("export", *command, manifest, "s3://no-such-bucket-here/out.manifest", "--label", "Bird")
        assert result.exit_code == ExitCode.CANNOT_PROCEED, result.output
        assert "no-such-bucket-here" in said(result) and "does not exist" in said(result)


# -- finding 14: untrusted manifests and links in the destination ------------------------------------


def test_a_source_outside_the_canonical_form_is_never_copied(tmp_path: Path, photos: list[Path]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's file")
    sneaky = f"{tmp_path}/photos/../../{tmp_path.name}/secret.txt"
    records = [bird(photos[0]), record(sneaky, label("Bird", 90, box(0, 0, 1, 1)))]
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    for command in ("custom-labels", "yolo", "voc", "coco"):
        dest = tmp_path / command
        result = cli("export", command, manifest, str(dest), "--label", "Bird")
        assert "secret.txt" not in "".join(p.read_text(errors="replace") for p in dest.rglob("*.json"))
        assert result.exit_code == ExitCode.OK, result.output
        assert f"skipped {sneaky}: unsafe_source" in said(result)
        assert "normalised path" in said(result)
        copied = [p for p in dest.rglob("*") if p.is_file() and p.name != RECEIPT]
        assert all(p.read_bytes() != secret.read_bytes() for p in copied)
        assert f"images from: {photos[0].parent} (1)" in said(result)


def test_a_link_inside_the_destination_is_not_followed_out(tmp_path: Path, manifest: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "yolo"
    dest.mkdir()
    (dest / "labels").symlink_to(outside)
    result = cli("export", "yolo", manifest, str(dest), "--label", "Bird")
    assert result.exit_code == ExitCode.CANNOT_PROCEED, result.output
    assert f"{dest / 'labels'} is a symbolic link inside the destination" in said(result)
    assert os.listdir(outside) == [] and sorted(os.listdir(dest)) == ["labels"]

    (dest / "labels").unlink()
    (dest / "labels").mkdir()
    (dest / "data.yaml").symlink_to(outside / "data.yaml")
    linked = cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert linked.exit_code == ExitCode.CANNOT_PROCEED, linked.output
    assert "data.yaml is a symbolic link" in said(linked) and os.listdir(outside) == []


# -- finding 15: a Ground Truth export of local sources ---------------------------------------------


def test_groundtruth_of_local_sources_is_refused_or_skipped(
    tmp_path: Path, manifest: str, photos: list[Path]
) -> None:
    out = tmp_path / "gt.manifest"
    refused = cli("export", "groundtruth", manifest, str(out), "--label", "Bird")
    assert refused.exit_code == ExitCode.CANNOT_PROCEED, refused.output
    assert "needs images in S3" in said(refused) and "all 3 selected images" in said(refused)
    assert not out.exists()
    mixed = write_manifest(
        tmp_path / "mixed.jsonl",
        [bird(photos[0]), record("s3://b/a.jpg", label("Bird", 90, box(0, 0, 1, 1)))],
    )
    some = cli("export", "groundtruth", mixed, str(out), "--label", "Bird")
    assert some.exit_code == ExitCode.OK, some.output
    assert f"skipped {photos[0]}: not_s3" in said(some)
    assert [json.loads(line)["source-ref"] for line in out.read_text().splitlines()] == ["s3://b/a.jpg"]


def test_coco_after_overwrite_still_reads_with_pycocotools(tmp_path: Path, manifest: str) -> None:
    dest = tmp_path / "coco"
    for extra in ([], ["--overwrite"]):
        assert (
            cli("export", "coco", manifest, str(dest), "--label", "Bird", "--val", "0", *extra).exit_code == 0
        )
    coco = COCO(str(dest / "annotations" / "instances_train.json"))
    assert len(coco.getImgIds()) == 3 and len(coco.getAnnIds()) == 3


def test_deleting_an_earlier_export_never_goes_through_a_link(tmp_path: Path, manifest: str) -> None:
    dest = tmp_path / "cl"
    assert cli("export", "custom-labels", manifest, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    outside = tmp_path / "outside"
    shutil.copytree(dest / "Bird", outside)  # the same files, the same sizes, out of the destination
    shutil.rmtree(dest / "Bird")
    (dest / "Bird").symlink_to(outside)
    before = tree(outside)
    # nothing reaches 99 now: --overwrite deletes the earlier copies, but not through the link
    result = cli(
        "export", "custom-labels", manifest, str(dest), "--label", "Bird", "--threshold", "99", "--overwrite"
    )
    assert result.exit_code == ExitCode.OK, result.output
    assert tree(outside) == before and len(before) == 3


def _cli_process(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "COLUMNS": "1000"}
    return subprocess.Popen(
        [sys.executable, "-m", "labelsift.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_sigkill_mid_export_leaves_the_earlier_export_and_a_second_one_waits_its_turn(tmp_path: Path) -> None:
    records = [
        record(f"s3://b/{i:06d}.jpg", label("Bird", 90, box(0.1, 0.1, 0.5, 0.5))) for i in range(40_000)
    ]
    big = write_manifest(tmp_path / "big.jsonl", records)
    small = write_manifest(tmp_path / "small.jsonl", records[:5])
    dest = tmp_path / "yolo"
    args = ("--label", "Bird", "--no-copy-images", "--workers", "1")
    assert cli("export", "yolo", small, str(dest), *args).exit_code == ExitCode.OK
    earlier = tree(dest)
    first = _cli_process("export", "yolo", big, str(dest), *args, "--overwrite")
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".labelsift-staging") for p in dest.iterdir()):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        second = _cli_process("export", "yolo", small, str(dest), *args, "--overwrite")
        out, _ = second.communicate(timeout=60)
        assert second.returncode == ExitCode.CANNOT_PROCEED, out
        assert f"another labelsift export (pid {first.pid}) is writing" in " ".join(out.split())
        while not any(dest.glob(".labelsift-staging-*/labels/*/*.txt")):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
    finally:
        first.kill()
        first.wait()
    left = tree(dest)
    debris = {rel for rel in left if rel.startswith((".labelsift-staging-", ".labelsift-lock-"))}
    assert debris  # what a killed export leaves: its staging folder, recognised by name
    assert {rel: data for rel, data in left.items() if rel not in debris} == earlier  # byte for byte
    rerun = cli("export", "yolo", small, str(dest), *args, "--val", "0.5", "--overwrite")
    assert rerun.exit_code == ExitCode.OK, rerun.output
    assert not any(rel.startswith(".labelsift-") and rel != RECEIPT for rel in tree(dest))


def test_an_interrupted_s3_export_is_taken_up_by_its_rerun(
    tmp_path: Path,
    make_bucket: Callable[[], str],
    s3_client: S3Client,
    aws_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src, dest_bucket = make_bucket(), make_bucket()
    records = []
    for i in range(4):
        etag = s3_client.put_object(Bucket=src, Key=f"{i}.jpg", Body=jpeg_bytes((i * 60, 0, 0)))[
            "ETag"
        ].strip('"')
        made = record(f"s3://{src}/{i}.jpg", label("Bird", 90, box(0.1, 0.1, 0.5, 0.5)), width=120, height=90)
        records.append(made.model_copy(update={"etag": etag}))
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    real_copy = Storage.copy
    calls: list[str] = []

    def copy_then_ctrl_c(self: Storage, src_uri: str, dst: str, *, overwrite: bool = False) -> bool:
        calls.append(src_uri)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_copy(self, src_uri, dst, overwrite=overwrite)

    monkeypatch.setattr(Storage, "copy", copy_then_ctrl_c)
    dest = f"s3://{dest_bucket}/yolo"
    stopped = cli("export", "yolo", manifest, dest, "--label", "Bird")
    assert stopped.exit_code == ExitCode.INTERRUPTED, stopped.output
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=dest_bucket)["Contents"]}
    assert f"yolo/{RECEIPT}.pending" in keys and sum(k.startswith("yolo/images/") for k in keys) == 2
    monkeypatch.setattr(Storage, "copy", real_copy)
    again = cli("export", "yolo", manifest, dest, "--label", "Bird")  # no --overwrite needed
    assert again.exit_code == ExitCode.OK, again.output
    assert "2 copied, 2 already there" in said(again)
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=dest_bucket)["Contents"]}
    assert f"yolo/{RECEIPT}" in keys and f"yolo/{RECEIPT}.pending" not in keys


@pytest.mark.parametrize(
    ("extra", "said_"),
    [
        (["--name", "Cat=Kitty"], "'Cat' is not one of the labels exported"),
        (["--label", "Dog", "--name", "Bird=pet", "--name", "Dog=pet"], "would both be the class"),
        (["--val", "1.5"], "--val 1.5: give the share"),
        (["--val", "nan"], "--val nan: give the share"),
    ],
)
def test_option_mistakes_in_an_export_are_usage_errors(
    manifest: str, tmp_path: Path, extra: list[str], said_: str
) -> None:
    result = cli("export", "yolo", manifest, str(tmp_path / "out"), "--label", "Bird", *extra)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert said_ in said(result) and "Traceback" not in result.output


def test_a_custom_labels_export_names_a_line_that_is_not_json(tmp_path: Path, manifest: str) -> None:
    lines = Path(manifest).read_text().splitlines()
    Path(manifest).write_text("\n".join([lines[0], "{not json: Bird", *lines[1:]]) + "\n")
    result = cli("export", "custom-labels", manifest, str(tmp_path / "cl"), "--label", "Bird")
    assert result.exit_code == ExitCode.BAD_MANIFEST, result.output
    assert "line 2" in said(result)


def test_a_receipt_that_is_a_link_or_not_a_file_is_not_read(tmp_path: Path, manifest: str) -> None:
    dest = tmp_path / "coco"
    dest.mkdir()
    (dest / RECEIPT).symlink_to("/dev/zero")  # read, it would never end
    linked = cli("export", "coco", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert linked.exit_code == ExitCode.CANNOT_PROCEED, linked.output
    assert "is a symbolic link, not a receipt labelsift wrote" in said(linked)
    (dest / RECEIPT).unlink()
    os.mkfifo(dest / RECEIPT)
    fifo = cli("export", "coco", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert fifo.exit_code == ExitCode.CANNOT_PROCEED, fifo.output
    assert "is not a file" in said(fifo)
