"""Attacks on the exports' promises (issue #14 follow-up): receipts, locks, staging folders and
links planted or raced in a destination. Each test goes through the command line, on real files.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from export_cli import RECEIPT, bird, cli, said
from export_cli import manifest as manifest  # fixture: a manifest of the three photos
from export_cli import photos as photos  # fixture: three small JPEGs
from export_cli import wide_console as wide_console  # autouse: long paths on one line
from manifest_builders import box, label, make_jpeg, record, write_manifest
from PIL import Image
from pycocotools.coco import COCO
from sandbox import tiny_disk

from labelsift.cli import ExitCode
from labelsift.storage import Storage

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client


def test_a_hard_link_planted_at_the_lock_is_never_truncated(tmp_path: Path, manifest: str) -> None:
    """The lock is opened without following symbolic links, but a hard link is the file itself:
    taking the lock truncated it and wrote the pid into it (here: the manifest being exported)."""
    dest = tmp_path / "yolo"
    dest.mkdir()
    before = Path(manifest).read_bytes()
    os.link(manifest, dest / ".labelsift-lock-export")
    result = cli("export", "yolo", manifest, str(dest), "--label", "Bird")
    assert result.exit_code == ExitCode.CANNOT_PROCEED, result.output
    assert str(dest / ".labelsift-lock-export") in said(result) and "move it away" in said(result).lower()
    assert Path(manifest).read_bytes() == before
    assert sorted(os.listdir(dest)) == [".labelsift-lock-export"]


def test_cleaning_debris_spares_the_staging_folder_of_another_running_export(
    tmp_path: Path, manifest: str
) -> None:
    """A folder export removes dead `.labelsift-staging-export-*` folders; the staging folder of a
    running review-queue export to `DEST/export-x.manifest` (key `export-x_manifest`, its own lock)
    starts with the same letters and was deleted under it."""
    dest = tmp_path / "out"
    stage = dest / ".labelsift-staging-export-x_manifest-0123456789ab"
    stage.mkdir(parents=True)
    (stage / "export-x.manifest").write_text("half written by a running export\n")
    with open(dest / ".labelsift-lock-export-x_manifest", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # that export is running
        result = cli("export", "yolo", manifest, str(dest), "--label", "Bird")
        assert result.exit_code == ExitCode.OK, result.output
        assert (stage / "export-x.manifest").exists()
    dead = dest / ".labelsift-staging-export-0123456789ab"  # a dead one of this kind still goes
    dead.mkdir()
    again = cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert again.exit_code == ExitCode.OK, again.output
    assert not dead.exists() and stage.exists()


def test_a_file_edited_to_the_same_size_is_the_users(tmp_path: Path, manifest: str) -> None:
    """The receipt records the SHA-256 of each file labelsift wrote, but only the size was checked:
    `Bird` edited to `Bard` in data.yaml was silently replaced by `--overwrite`, and an edited
    label file the new export no longer writes was deleted."""
    dest = tmp_path / "yolo"
    assert cli("export", "yolo", manifest, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    yaml = dest / "data.yaml"
    edited = yaml.read_text().replace("Bird", "Bard")
    yaml.write_text(edited)
    again = cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert again.exit_code == ExitCode.CANNOT_PROCEED, again.output
    assert f"{yaml} is in the way" in said(again)
    assert yaml.read_text() == edited

    yaml.unlink()
    assert cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--overwrite").exit_code == 0
    labels = sorted(dest.glob("labels/*/*.txt"))
    mine = labels[0]
    mine.write_text(mine.read_text().replace("0 ", "1 ", 1))  # same size, another class
    kept = mine.read_text()
    other = next(p for p in (tmp_path / "photos").iterdir() if f"_photos_{p.stem}-" not in mine.name)
    one = write_manifest(tmp_path / "one.jsonl", [bird(other)])
    replaced = cli("export", "yolo", one, str(dest), "--label", "Bird", "--val", "0", "--overwrite")
    assert replaced.exit_code == ExitCode.OK, replaced.output
    assert mine.read_text() == kept  # the user's edit is not the earlier export's to delete


def test_overwrite_never_deletes_the_images_the_new_export_names(tmp_path: Path, manifest: str) -> None:
    """A YOLO export copies images into DEST; a manifest of those copies exported as COCO into DEST
    with `--no-copy-images --overwrite` deleted them as "files of the earlier export", leaving a
    COCO JSON whose every file_name is gone."""
    dest = tmp_path / "set"
    assert cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--val", "0").exit_code == 0
    copies = sorted((dest / "images" / "train").iterdir())
    assert len(copies) == 3
    again = write_manifest(tmp_path / "copies.jsonl", [bird(p) for p in copies])
    result = cli(
        "export", "coco", again, str(dest), "--label", "Bird", "--val", "0", "--no-copy-images", "--overwrite"
    )
    assert result.exit_code == ExitCode.OK, result.output
    named = json.loads((dest / "annotations" / "instances_train.json").read_text())["images"]
    assert sorted(image["file_name"] for image in named) == [str(p) for p in copies]
    assert all(p.exists() for p in copies)
    assert not (dest / "labels").exists()  # the rest of the earlier export is replaced
    coco = COCO(str(dest / "annotations" / "instances_train.json"))
    assert len(coco.getImgIds()) == 3
    # the copies it kept are still labelsift's: the YOLO export can come back over them
    back = cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--val", "0", "--overwrite")
    assert back.exit_code == ExitCode.OK, back.output


def test_a_full_disk_during_a_custom_labels_copy_names_the_destination(tmp_path: Path) -> None:
    """A full disk while copying images (Custom Labels) stopped with the staging folder's path in
    the message (a folder already removed) instead of "cannot write DEST: no space left"."""
    with tiny_disk(tmp_path / "tiny") as mount:
        photos = [make_jpeg(tmp_path / "photos" / f"{i}.jpg", 200, 100) for i in range(30)]
        manifest = write_manifest(tmp_path / "m.jsonl", [bird(p) for p in photos])
        for command in ("custom-labels", "yolo", "voc"):
            dest = mount / command
            result = cli("export", command, manifest, str(dest), "--label", "Bird")
            assert result.exit_code == ExitCode.CANNOT_PROCEED, result.output
            assert f"cannot write {dest}: no space left on the device" in said(result), result.output
            assert ".labelsift-staging" not in result.output
            assert os.listdir(dest) == []


def test_overwrite_on_s3_never_deletes_the_images_the_new_export_names(
    tmp_path: Path, make_bucket: Callable[[], str], s3_client: S3Client, aws_env: dict[str, str]
) -> None:
    src, dest_bucket = make_bucket(), make_bucket()
    records = []
    for i in range(2):
        body = _jpeg(i)
        etag = s3_client.put_object(Bucket=src, Key=f"{i}.jpg", Body=body)["ETag"].strip('"')
        made = record(
            f"s3://{src}/{i}.jpg", label("Bird", 90, box(0.1, 0.1, 0.5, 0.5)), width=200, height=100
        )
        records.append(made.model_copy(update={"etag": etag, "size": len(body)}))
    dest = f"s3://{dest_bucket}/set"
    first = write_manifest(tmp_path / "first.jsonl", records)
    assert cli("export", "yolo", first, dest, "--label", "Bird", "--val", "0").exit_code == ExitCode.OK
    listed = s3_client.list_objects_v2(Bucket=dest_bucket, Prefix="set/images/")["Contents"]
    copies = []
    for item, made in zip(listed, records, strict=True):
        uri = f"s3://{dest_bucket}/{item['Key']}"
        copies.append(made.model_copy(update={"source": uri, "etag": item["ETag"].strip('"')}))
    again = write_manifest(tmp_path / "copies.jsonl", copies)
    result = cli(
        "export", "coco", again, dest, "--label", "Bird", "--val", "0", "--no-copy-images", "--overwrite"
    )
    assert result.exit_code == ExitCode.OK, result.output
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=dest_bucket)["Contents"]}
    assert {item["Key"] for item in listed} <= keys  # the images the COCO JSON names are there
    assert not any(key.startswith("set/labels/") for key in keys)
    back = cli("export", "yolo", first, dest, "--label", "Bird", "--val", "0", "--overwrite")
    assert back.exit_code == ExitCode.OK, back.output


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (200, 100), (seed * 40, 10, 10)).save(out, "JPEG")
    return out.getvalue()


def test_custom_labels_does_not_adopt_another_formats_export(tmp_path: Path, manifest: str) -> None:
    """Custom Labels adds to its own folders without --overwrite; into a YOLO export it took the
    YOLO files into a receipt headed custom-labels, so the next `custom-labels --overwrite` (meant
    to replace the Custom Labels set) deleted the YOLO set."""
    dest = tmp_path / "out"
    assert cli("export", "yolo", manifest, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    yolo = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    added = cli("export", "custom-labels", manifest, str(dest), "--label", "Bird")
    assert added.exit_code == ExitCode.CANNOT_PROCEED, added.output
    assert "already holds a YOLO export" in said(added) and "--overwrite" in said(added)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == yolo
    again = cli("export", "yolo", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert again.exit_code == ExitCode.OK, again.output


def test_a_rerun_after_a_kill_while_moving_files_into_place_needs_nothing_removed(
    tmp_path: Path, manifest: str
) -> None:
    """SIGKILL after the pending receipt is in place but before every staged file was moved: the
    files not yet moved are the earlier export's, the pending receipt lists the new ones, and the
    rerun called the earlier data.yaml "in the way" (exit 3) for ever. The state is built exactly:
    the pending receipt is the one the same export writes into a twin destination."""
    dest, twin = tmp_path / "yolo", tmp_path / "twin"
    args = ("--label", "Bird", "--val", "0")
    assert cli("export", "yolo", manifest, str(dest), *args).exit_code == ExitCode.OK
    renamed = (*args, "--name", "Bird=Birdie", "--overwrite")
    assert cli("export", "yolo", manifest, str(twin), *renamed).exit_code == ExitCode.OK
    (dest / f"{RECEIPT}.pending").write_bytes((twin / RECEIPT).read_bytes())
    assert (dest / "data.yaml").read_bytes() != (twin / "data.yaml").read_bytes()  # not moved yet
    rerun = cli("export", "yolo", manifest, str(dest), *renamed)
    assert rerun.exit_code == ExitCode.OK, rerun.output
    assert (dest / "data.yaml").read_text() == (twin / "data.yaml").read_text().replace(str(twin), str(dest))
    assert not (dest / f"{RECEIPT}.pending").exists()


def test_a_folder_made_read_only_inside_the_destination_is_not_reported_as_nothing_left(
    tmp_path: Path, manifest: str
) -> None:
    """A read-only folder inside the destination (`chattr +i labels/train`) stops the move into
    place half way; the message said "Nothing of this export was left there" while part of it
    was. It must say what is left and that the same command reruns it."""
    dest = tmp_path / "yolo"
    args = ("--label", "Bird", "--val", "0")
    assert cli("export", "yolo", manifest, str(dest), *args).exit_code == ExitCode.OK
    frozen = dest / "labels" / "train"
    if subprocess.run(["chattr", "+i", str(frozen)], capture_output=True).returncode:
        pytest.skip("cannot make a folder immutable here")
    try:
        renamed = (*args, "--name", "Bird=Birdie", "--overwrite")
        stopped = cli("export", "yolo", manifest, str(dest), *renamed)
        assert stopped.exit_code == ExitCode.CANNOT_PROCEED, stopped.output
        assert "Nothing of this export was left there" not in said(stopped)
        assert "rerun the same command" in said(stopped) and f"{RECEIPT}.pending" in said(stopped)
    finally:
        subprocess.run(["chattr", "-i", str(frozen)], check=True)
    rerun = cli("export", "yolo", manifest, str(dest), *renamed)
    assert rerun.exit_code == ExitCode.OK, rerun.output
    assert "Birdie" in (dest / "data.yaml").read_text() and not (dest / f"{RECEIPT}.pending").exists()
    assert sorted(p.name for p in frozen.iterdir() if p.is_file()) == sorted(
        p.stem + ".txt" for p in (dest / "images" / "train").iterdir() if p.is_file()
    )


def test_an_interrupted_export_of_another_format_is_not_deleted_without_overwrite(
    tmp_path: Path, manifest: str
) -> None:
    """A pending receipt lets the interrupted export's own rerun take its files without
    --overwrite; a COCO export without --overwrite took the files of an interrupted YOLO export
    the same way and deleted them. (The pending receipt is built exactly: the YOLO export's.)"""
    dest = tmp_path / "out"
    assert cli("export", "yolo", manifest, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    (dest / RECEIPT).rename(dest / f"{RECEIPT}.pending")  # what a killed YOLO export can leave
    yolo = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    other = cli("export", "coco", manifest, str(dest), "--label", "Bird")
    assert other.exit_code == ExitCode.CANNOT_PROCEED, other.output
    assert "already holds a YOLO export (interrupted)" in said(other) and "--overwrite" in said(other)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == yolo
    rerun = cli("export", "yolo", manifest, str(dest), "--label", "Bird")  # its own rerun: no --overwrite
    assert rerun.exit_code == ExitCode.OK, rerun.output
    assert (dest / RECEIPT).exists() and not (dest / f"{RECEIPT}.pending").exists()


def test_a_receipt_line_typed_in_by_hand_does_not_make_a_users_file_labelsifts(
    tmp_path: Path, manifest: str
) -> None:
    """labelsift lists what it wrote with a SHA-256 and what it copied with a source; a line with
    only a path and the right size (`notes/todo.txt`, 7 bytes), added by hand, made --overwrite
    delete the user's file as "a file of the earlier export"."""
    dest = tmp_path / "coco"
    assert cli("export", "coco", manifest, str(dest), "--label", "Bird").exit_code == ExitCode.OK
    (dest / "notes").mkdir()
    (dest / "notes" / "todo.txt").write_text("keep me")
    with open(dest / RECEIPT, "a") as receipt:
        receipt.write(json.dumps({"path": "notes/todo.txt", "size": 7}) + "\n")
        receipt.write(json.dumps({"path": "notes/other.txt", "size": 7, "sha256": "not a digest"}) + "\n")
    (dest / "notes" / "other.txt").write_text("keep me")
    again = cli("export", "coco", manifest, str(dest), "--label", "Bird", "--overwrite")
    assert again.exit_code == ExitCode.OK, again.output
    assert (dest / "notes" / "todo.txt").read_text() == "keep me"
    assert (dest / "notes" / "other.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("other", "mine"),
    [("a b.manifest", "a_b.manifest"), ("q" * 60 + "-one.manifest", "q" * 60 + "-two.manifest")],
    ids=["space-vs-underscore", "alike-in-60-characters"],
)
def test_two_single_file_exports_whose_names_look_alike_do_not_share_a_lock(
    tmp_path: Path, manifest: str, other: str, mine: str
) -> None:
    """The lock and staging key of a single-file output was its name with unsafe characters replaced
    and cut at 60: `a b.manifest` and `a_b.manifest` shared one lock, so an export to one stopped
    with 'another export is writing' while an export to the other ran."""
    from labelsift.exporters.owned import OwnedOutput

    dest = tmp_path / "jobs"
    dest.mkdir()
    running = OwnedOutput(
        str(dest), Storage(), fmt="review", manifest=manifest, overwrite=False, single=other
    )
    with running:  # an export to `other` holds its lock while this one runs
        result = cli(
            "export",
            "review",
            manifest,
            str(dest / mine),
            "--label",
            "Bird",
            "--band",
            "0:100",
            "--allow-local",
        )
    assert result.exit_code == ExitCode.OK, result.output
    assert (dest / mine).is_file()
