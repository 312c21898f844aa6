"""Exporting from a folder of shards against exporting from one manifest: what the temporary merge costs.

    python bench/shards.py [--records 100000] [--shards 10]

A synthetic manifest (bench/manifest.py's records) is cut into `--shards` shard files in a folder.
Runs, each in a fresh subprocess (peak memory is its own), in the same run:
- `export coco` of the one manifest file (the baseline);
- `merge` of the folder into one file;
- `export coco` of the folder (which merges into a temporary file, then exports it).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from manifest import generate


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries that over an exec from the
    parent that forked, so a child of a big parent would report the parent's size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(run: str, manifest: str, out: str) -> None:
    from labelsift.exporters.coco import export_coco
    from labelsift.manifest import merge
    from labelsift.select import Selection

    start = time.perf_counter()
    if run == "merge":
        merge([manifest], out)
    else:
        export_coco(manifest, out, Selection(("Bird", "Dog", "Car"), threshold=60.0), copy_images=False)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak}))


def measure(run: str, manifest: Path, out: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", run, str(manifest), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _annotations(dest: Path, split: str) -> object:
    data = json.loads((dest / "annotations" / f"instances_{split}.json").read_text())
    data.pop("info", None)  # names the manifest it was made from
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--child", nargs=3)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="labelsift-bench-shards-") as tmp:
        root = Path(tmp)
        whole = root / "whole.jsonl"
        generate(whole, args.records, seed=0)
        folder = root / "shards"
        folder.mkdir()
        lines = whole.read_text().splitlines(keepends=True)
        per = -(-len(lines) // args.shards)
        for i in range(args.shards):
            (folder / f"shard-{i:04d}.jsonl").write_text("".join(lines[i * per : (i + 1) * per]))
        del lines
        base = measure("export", whole, root / "coco-file")
        merged = measure("merge", folder, root / "merged.jsonl")
        from_folder = measure("export", folder, root / "coco-folder")
        same = all(_annotations(root / "coco-file", name) == _annotations(root / "coco-folder", name)
                   for name in ("train", "val"))  # fmt: skip
        print(f"{args.records:,} records in {args.shards} shards (outputs identical: {same})")
        print("| run | seconds | records/s | vs export of one file | peak MB |")
        print("|---|---|---|---|---|")
        for name, result in (
            ("export coco, one manifest file (baseline)", base),
            ("merge of the folder", merged),
            ("export coco of the folder (temporary merge + export)", from_folder),
        ):
            print(
                f"| {name} | {result['seconds']:.1f} | {args.records / result['seconds']:,.0f} | "
                f"{result['seconds'] / base['seconds']:.2f}× the time | {result['peak_mb']:.0f} |"
            )


if __name__ == "__main__":
    main()
