"""Issue #14, the command line's part: a user's mistake ends with its documented exit code and one
paragraph naming the object and the fix (never exit 1, "a bug"), and a scan's summary and progress
tell the truth (what the manifest holds, what was billed, the final state).

Everything goes through the CLI: typer's CliRunner in process, or `python -m labelsift.cli` in a
subprocess where a signal, a port, a full disk or a terminal-less stdout matters. Billing is proved
by the local Rekognition endpoint's own call count.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox import can_mount_tmpfs
from typer.testing import CliRunner, Result

from labelsift.cli import ExitCode, app
from labelsift.demo import photos
from labelsift.manifest import iter_records
from labelsift_testing.fake_rekognition import FakeRekognition, make_image

runner = CliRunner()
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def flat(text: str) -> str:
    return " ".join(text.split())


def assert_paragraph(result: Result, code: int, *names: str) -> str:
    """The documented code; an `error:` paragraph naming each of `names`; no traceback."""
    assert result.exit_code == code, result.output
    text = flat(result.output)
    assert "Traceback" not in text and "unexpected" not in text, text
    assert "error" in text.lower()  # ours ("error: …") or click's own ("Error … Invalid value")
    squeezed = "".join(text.split())  # rich wraps long paths mid-word
    for name in names:
        assert "".join(name.split()) in squeezed, (name, text)
    return text


def labelsift(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labelsift.cli", *args], capture_output=True, text=True, timeout=timeout,
        env=env or os.environ,
    )  # fmt: skip


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled photos scanned once with the offline model: a manifest with Bird, Dog, Cat …"""
    root = tmp_path_factory.mktemp("scanned")
    manifest = root / "m.jsonl"
    result = cli("scan", str(photos()), "-o", str(manifest), "--workers", "2")
    assert result.exit_code == 0, result.output
    return manifest


# ---- finding 12: user mistakes in export options are usage errors (exit 2) -----------------------

EXPORT_MISTAKES = {
    "empty-label": (["--label", ""], ["--label", "empty"]),
    "label-twice": (["--label", "Dog", "--label", "Dog"], ["'Dog'", "twice"]),
    "label-twice-other-case": (["--label", "Dog", "--label", "dog"], ["'dog'", "twice"]),
    "val-above-1": (["--label", "Dog", "--val", "1.5"], ["--val", "1.5"]),
    "val-negative": (["--label", "Dog", "--val", "-0.1"], ["--val", "-0.1"]),
    "val-nan": (["--label", "Dog", "--val", "nan"], ["--val", "nan"]),
    "name-of-no-label": (["--label", "Dog", "--name", "Cat=Kitty"], ["--name", "Cat=Kitty", "Dog"]),
    "two-names-one-target": (
        ["--label", "Dog", "--label", "Cat", "--name", "Dog=pet", "--name", "Cat=pet"],
        ["--name", "pet", "Dog", "Cat"],
    ),
    "one-label-two-names": (
        ["--label", "Dog", "--name", "Dog=a", "--name", "dog=b"],
        ["--name", "Dog=a", "dog=b"],
    ),
    "workers-far-above-cores": (
        ["--label", "Dog", "--workers", str(4 * CORES + 1)],
        ["--workers", str(4 * CORES + 1), f"{CORES} core"],
    ),
}


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
@pytest.mark.parametrize("case", list(EXPORT_MISTAKES), ids=list(EXPORT_MISTAKES))
def test_export_option_mistakes_are_usage_errors_and_write_nothing(
    scanned: Path, tmp_path: Path, fmt: str, case: str
) -> None:
    options, names = EXPORT_MISTAKES[case]
    dest = tmp_path / "out"
    result = cli("export", fmt, str(scanned), str(dest), *options)
    assert_paragraph(result, ExitCode.USAGE, *names)
    assert not dest.exists()


@pytest.mark.parametrize(
    ("command", "names"),
    [
        (["export", "custom-labels", "{m}", "{d}", "--label", "Dog", "--name", "Cat=Kitty"], ["Cat=Kitty"]),
        (["export", "groundtruth", "{m}", "{d}/gt.jsonl", "--label", "Dog", "--label", "DOG"], ["twice"]),
        (["export", "review", "{m}", "{d}/q.jsonl", "--label", ""], ["empty"]),
        (["scan", str(photos()), "-o", "{d}/s.jsonl", "--label", "Dog", "--label", "dog"], ["twice"]),
        (["filter", str(photos()), "{d}/hits", "--label", ""], ["empty"]),
    ],
    ids=["custom-labels-name", "groundtruth-twice", "review-queue-empty", "scan-twice", "filter-empty"],
)
def test_label_mistakes_are_usage_errors_in_every_command(
    scanned: Path, tmp_path: Path, command: list[str], names: list[str]
) -> None:
    dest = tmp_path / "out"
    args = [part.format(m=scanned, d=dest) for part in command]
    assert_paragraph(cli(*args), ExitCode.USAGE, *names)
    assert not dest.exists()


def test_debug_adds_a_traceback_and_keeps_the_usage_code(scanned: Path, tmp_path: Path) -> None:
    result = cli(
        "--debug", "export", "coco", str(scanned), str(tmp_path / "o"), "--label", "Dog", "--val", "2"
    )
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Traceback" in result.output and "--val" in flat(result.output)


@pytest.mark.parametrize("name", ["a/b", "../up"])
def test_filter_names_its_default_manifest_as_one_file_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli(
        "filter", str(photos()), str(tmp_path / "hits"), "--label", "Dog", "--name", name, "--workers", "2"
    )
    made = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("labelsift-"))
    if name.startswith(".."):  # a folder outside DEST is refused before anything is scanned or written
        assert result.exit_code == ExitCode.USAGE and "'../up'" in result.output and made == []
    else:
        assert len(made) == 1 and made[0].endswith(".jsonl") and (tmp_path / made[0]).is_file(), made


def test_demo_into_a_file_is_a_usage_error_and_leaves_the_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    assert_paragraph(cli("demo", str(target)), ExitCode.USAGE, "notes.txt", "folder")
    assert target.read_text() == "mine\n"


# ---- finding 15: scan options that were accepted and should not be ------------------------------


@pytest.mark.parametrize(
    ("options", "name"),
    [
        (["--retry-mode", "bogus"], "--retry-mode"),
        (["--free-images", "-5"], "--free-images"),
        (["--budget", "nan"], "--budget"),
        (["--rate", "nan"], "--rate"),
        (["--threshold", "nan", "--label", "Dog"], "threshold"),
    ],
    ids=["retry-mode", "free-images", "budget-nan", "rate-nan", "threshold-nan"],
)
def test_bad_scan_options_are_refused_before_anything_is_written(
    tmp_path: Path, options: list[str], name: str
) -> None:
    manifest = tmp_path / "m.jsonl"
    result = cli("scan", str(photos()), "-o", str(manifest), *options)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert name in flat(result.output)
    assert not manifest.exists()


@pytest.mark.parametrize("rate", ["0", "nan", "inf", "-3"])
def test_estimate_with_a_rate_that_is_no_rate_is_a_usage_error(rate: str) -> None:
    result = cli("estimate", str(photos()), "--rate", rate)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--rate" in flat(result.output)


# ---- finding 12: a bad --prices file (exit 2 naming the file and the field) ----------------------


def _prices(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "prices.json"
    if case == "missing":
        return tmp_path / "no-such-prices.json"
    if case == "folder":
        path.mkdir()
    elif case == "not-json":
        path.write_text('{"detector_tiers": [\n  {"usd_per_image": 0.001,}\n]}\n')
    elif case == "wrong-shape":
        path.write_text(json.dumps({"detector_tiers": [{"usd_per_image": -1}]}))
    elif case == "unknown-field":
        path.write_text(json.dumps({"free_image": 5}))
    elif case == "not-an-object":
        path.write_text("[1, 2]")
    elif case == "no-tiers":
        path.write_text(json.dumps({"detector_tiers": []}))
    elif case == "tiers-out-of-order":
        path.write_text(
            json.dumps({"detector_tiers": [{"usd_per_image": 1}, {"up_to": 5, "usd_per_image": 2}]})
        )
    elif case == "crowd-range":
        path.write_text(json.dumps({"crowd_workers_low": 5, "crowd_workers_high": 3}))
    elif case == "endless":
        return Path("/dev/zero")
    elif case == "not-utf8":
        path.write_bytes(b'{"free_images_left": 5, "x": "\xe9"}')
    return path


PRICE_CASES = {
    "missing": ["no-such-prices.json", "no such file"],
    "folder": ["prices.json", "folder"],
    "not-json": ["prices.json", "line 2"],
    "wrong-shape": ["prices.json", "detector_tiers.0.usd_per_image"],
    "unknown-field": ["prices.json", "free_image"],
    "not-an-object": ["prices.json", "object"],
    "not-utf8": ["prices.json", "UTF-8"],
    "endless": ["/dev/zero", "not a price table"],
    "no-tiers": ["prices.json", "detector_tiers", "at least one tier"],
    "tiers-out-of-order": ["prices.json", "detector_tiers", "only the last tier"],
    "crowd-range": ["prices.json", "crowd_workers_low 5 is above crowd_workers_high 3"],
}


@pytest.mark.parametrize("command", ["estimate", "scan"])
@pytest.mark.parametrize("case", list(PRICE_CASES), ids=list(PRICE_CASES))
def test_a_bad_prices_file_is_a_usage_error_naming_the_file_and_field(
    tmp_path: Path, command: str, case: str
) -> None:
    prices = _prices(tmp_path, case)
    manifest = tmp_path / "m.jsonl"
    args = ["scan", str(photos()), "-o", str(manifest)] if command == "scan" else ["estimate", str(photos())]
    assert_paragraph(cli(*args, "--prices", str(prices)), ExitCode.USAGE, *PRICE_CASES[case])
    assert not manifest.exists()


# ---- finding 12: review --port -------------------------------------------------------------------


@pytest.mark.parametrize("debug", [[], ["--debug"]], ids=["plain", "debug"])
def test_review_on_a_port_in_use_is_exit_3_naming_the_port(scanned: Path, debug: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = labelsift(*debug, "review", str(scanned), "--label", "Dog", "--band", "0:100",
                         "--port", str(port), timeout=60)  # fmt: skip
    assert done.returncode == ExitCode.CANNOT_PROCEED, done.stderr  # --debug keeps the code
    text = flat(done.stdout + done.stderr)
    assert f"port {port}" in text and "--port" in text
    assert ("Traceback" in text) == bool(debug)


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_review_on_a_port_out_of_range_is_a_usage_error(scanned: Path, port: str) -> None:
    done = labelsift("review", str(scanned), "--label", "Dog", "--port", port, timeout=60)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "--port" in flat(done.stderr) and "Traceback" not in done.stderr


# ---- finding 15: a label that matches nothing says so, with the closest labels -------------------


def test_review_of_a_label_no_record_has_says_did_you_mean(scanned: Path) -> None:
    done = labelsift("review", str(scanned), "--label", "Brid", timeout=60)
    assert done.returncode == ExitCode.USAGE, done.stdout + done.stderr
    text = flat(done.stderr)
    assert "Brid" in text and "Did you mean 'Bird'" in text


@pytest.mark.parametrize("fmt", ["coco", "custom-labels"])
def test_export_of_a_label_no_record_has_warns_with_the_closest_labels(
    scanned: Path, tmp_path: Path, fmt: str
) -> None:
    result = cli("export", fmt, str(scanned), str(tmp_path / "out"), "--label", "Brid", "--label", "Dog")
    assert result.exit_code == ExitCode.OK, result.output
    text = flat(result.output)
    assert "warning:" in text and "'Brid'" in text and "Did you mean 'Bird'" in text
    assert "'Dog'" not in text.split("warning:", 1)[1]  # Dog matched: no warning for it
    assert "export" in text  # the normal summary still follows


def test_the_label_check_never_fails_an_export_that_succeeded(scanned: Path, tmp_path: Path) -> None:
    """The closest-label pass reads lines the export had no need to parse: a bad one there is named
    in the warning, and the export's own result (exit 0) stands."""
    manifest = tmp_path / "m.jsonl"
    bad = {"source": "/elsewhere/cat.jpg", "status": "labeled", "width": 0, "height": 10, "labels": []}
    manifest.write_text(scanned.read_text() + json.dumps(bad) + "\n")
    result = cli("export", "coco", str(manifest), str(tmp_path / "out"), "--label", "Dog", "--label", "Brid")
    assert result.exit_code == ExitCode.OK, result.output
    text = flat(result.output)
    assert "warning:" in text and "Brid" in text and "line 10" in text


# ---- finding 15: per-image messages name the object ----------------------------------------------


def test_every_per_image_message_names_its_object(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello, not an image\n")
    (folder / "cut.jpg").write_bytes((photos() / "dog.jpg").read_bytes()[:3000])
    manifest = tmp_path / "m.jsonl"
    result = cli("scan", str(folder), "-o", str(manifest), "--workers", "1")
    assert result.exit_code == ExitCode.OK, result.output
    records = list(iter_records(str(manifest)))
    assert {r.error.code for r in records if r.error} == {"EmptyObject", "NotAnImage", "CorruptImage"}
    for record in records:
        assert record.error is not None and record.source in record.error.message, record
    shown = flat(result.output)
    for name in ("empty.jpg", "text.jpg", "cut.jpg"):
        assert str(folder / name) in shown, (name, shown)


# ---- finding 15: the last progress line is the true final state ----------------------------------


def test_a_scan_without_a_terminal_never_ends_on_a_stale_progress_line(tmp_path: Path) -> None:
    done = labelsift("scan", str(photos()), "-o", str(tmp_path / "m.jsonl"), "--workers", "2")
    assert done.returncode == ExitCode.OK, done.stderr
    progress = [line for line in done.stdout.splitlines() if re.match(r"\d+ images \(", line)]
    assert all(not line.startswith("0 images") for line in progress), progress
    if progress:  # a run long enough to print progress ends on its true final count
        assert progress[-1].startswith("9 images"), progress


# ---- finding 15: after Ctrl-C the summary matches the manifest and the bill ----------------------


def _summary_value(stdout: str, row: str) -> int:
    match = re.search(rf"{re.escape(row)}\s*│\s*(\d+)", stdout)
    assert match, stdout
    return int(match.group(1))


def test_the_summary_after_ctrl_c_counts_every_record_written_and_every_call_billed(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i:03d}.jpg").write_bytes(make_image("bird" if i % 3 else "dog", seed=i))
    fake_rekognition.latency_s = 0.3
    manifest = tmp_path / "m.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "labelsift.cli", "scan", str(folder), "-o", str(manifest),
         "-d", "rekognition", "--workers", "6", "-l", "Bird"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while (not manifest.exists() or manifest.read_bytes().count(b"\n") < 4) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    records = list(iter_records(str(manifest)))
    assert 4 <= len(records) < 40
    assert fake_rekognition.billed == len(records)
    assert _summary_value(stdout, "scanned now") == len(records), stdout
    assert _summary_value(stdout, "billed calls") == fake_rekognition.billed, stdout
    shown = re.search(r"labeled / skipped / errors\s*│\s*(\d+) / (\d+) / (\d+)", stdout)
    assert shown and sum(map(int, shown.groups())) == len(records), stdout
    time.sleep(0.4)  # let the endpoint finish any late answer here, not in the next test


# ---- finding 12: disk full while a scan writes its manifest --------------------------------------


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs `unshare -rm` to mount a small tmpfs")
def test_disk_full_stops_the_scan_with_its_summary_and_the_rerun_pays_only_what_was_in_flight(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    count, workers = 30, 3
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(count):
        (folder / f"{i:03d}.jpg").write_bytes(make_image("bird", seed=i))
    disk = tmp_path / "disk"
    disk.mkdir()
    scan = [sys.executable, "-m", "labelsift.cli", "scan", str(folder), "-o", f"{disk}/m.jsonl",
            "-d", "rekognition", "--workers", str(workers)]  # fmt: skip
    command = " ".join(f"'{part}'" for part in scan)
    # One mount namespace: a 12 KiB disk fills up; then it is grown and the same scan rerun.
    script = (
        f"mount -t tmpfs -o size=12k tmpfs '{disk}' || exit 99\n"
        f"{command} > '{tmp_path}/full.out' 2> '{tmp_path}/full.err'; echo $? > '{tmp_path}/full.rc'\n"
        f"cp '{disk}/m.jsonl' '{tmp_path}/after-full.jsonl'\n"
        f"mount -o remount,size=4m '{disk}' || exit 98\n"
        f"{command} > '{tmp_path}/rerun.out' 2> '{tmp_path}/rerun.err'; echo $? > '{tmp_path}/rerun.rc'\n"
        f"cp '{disk}/m.jsonl' '{tmp_path}/final.jsonl'\n"
    )
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    full_out, full_err = (tmp_path / "full.out").read_text(), (tmp_path / "full.err").read_text()
    assert int((tmp_path / "full.rc").read_text()) == ExitCode.CANNOT_PROCEED, full_out + full_err
    text = flat(full_err)
    assert "m.jsonl" in text and "no space left" in text.lower() and "unexpected" not in text, text
    assert "scan summary" in full_out
    written = (tmp_path / "after-full.jsonl").read_bytes()
    kept = written.count(b"\n")
    assert 1 <= kept < count
    assert _summary_value(full_out, "scanned now") == kept, full_out
    first_bill = _summary_value(full_out, "billed calls")
    lost = _summary_value(full_out, "answered, not recorded")
    # lost: only what was in flight: the answers that came back ahead of their turn and wait to be
    # written in source order (requests run at most 4 x workers ahead), and up to `workers` requests
    # the freed threads had already sent before the stop
    assert first_bill == kept + lost and 1 <= lost <= 5 * workers, full_out
    rerun_out = (tmp_path / "rerun.out").read_text()
    assert int((tmp_path / "rerun.rc").read_text()) == ExitCode.OK, rerun_out
    assert fake_rekognition.billed == first_bill + _summary_value(rerun_out, "billed calls")
    final = list(iter_records(str(tmp_path / "final.jsonl")))
    assert sorted(r.source for r in final) == sorted(str(p) for p in folder.iterdir())
    assert (tmp_path / "final.jsonl").read_bytes().count(b"\n") == count  # no torn or doubled line
    repeated = sum(calls - 1 for calls in fake_rekognition.calls_by_image(billed_only=True).values())
    assert fake_rekognition.billed == count + repeated
    assert repeated == first_bill - kept  # paid again: only the answers that could not be written
