"""The code's shape, as a report (never a gate): the longest functions and the largest modules.

    python tools/shape.py [--top 15] [--over 60] [ROOT]

Lengths are in source lines (`ast`: from the `def` line, decorators excluded, to the last line of
the body), without the docstring: documenting parameters must not read as a longer function.
Functions over `--over` lines are counted; the guide asks for a stated reason there.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from pathlib import Path


def functions(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            end = node.end_lineno or node.lineno
            yield end - node.lineno + 1 - _docstring_lines(node), f"{path}:{node.lineno} {node.name}"


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if docstring and isinstance(first.value.value, str):
        return (first.end_lineno or first.lineno) - first.lineno + 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", nargs="?", default="src/labelsift")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--over", type=int, default=60)
    args = parser.parse_args()
    files = sorted(Path(args.root).rglob("*.py"))
    found = sorted((item for path in files for item in functions(path)), reverse=True)
    modules = sorted(
        ((len(path.read_text(encoding="utf-8").splitlines()), str(path)) for path in files), reverse=True
    )
    print(
        f"longest functions ({sum(n > args.over for n, _ in found)} of {len(found)} over {args.over} lines):"
    )
    for lines, name in found[: args.top]:
        print(f"  {lines:5d}  {name}")
    print(f"largest modules ({len(files)} files, {sum(n for n, _ in modules)} lines):")
    for lines, name in modules[: args.top]:
        print(f"  {lines:5d}  {name}")


if __name__ == "__main__":
    main()
