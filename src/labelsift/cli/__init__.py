"""The command line: parse, call the library, print. No logic of its own.

`app` is the typer application (the `labelsift` entry point); each command lives in the module of
its concern: `scanning` (scan, filter, estimate), `manifests` (merge, report, review,
import-review, demo), `exporting` (the `export` group), `custom_labels` (the `custom-labels`
group); `common` holds what they share (exit codes, consoles, friendly errors, shared options).
Commands are registered here, in the order `labelsift --help` lists them; `out` and `err` are the
consoles every command prints to (an embedding program may resize them).
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.logging import RichHandler

from labelsift.cli import custom_labels, exporting, manifests, scanning
from labelsift.cli.common import DEBUG_RUN
from labelsift.cli.common import ExitCode as ExitCode
from labelsift.cli.common import err as err
from labelsift.cli.common import out as out
from labelsift.redact import RedactSecrets

app = typer.Typer(
    name="labelsift",
    help="Turn a dirty pile of images into clean, annotated training data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    handler = RichHandler(console=err, show_path=False, show_time=False)
    handler.addFilter(RedactSecrets())  # no token, signature or secret in any log line
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(message)s", handlers=[handler]
    )
    DEBUG_RUN.set(debug)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "smart_open"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


app.command("scan")(scanning.scan_command)
app.command("filter")(scanning.filter_command)
app.command("estimate")(scanning.estimate_command)
app.command("merge")(manifests.merge_command)
app.command("report")(manifests.report_command)
app.add_typer(exporting.export_app, name="export")
app.command("review")(manifests.review_command)
app.command("import-review")(manifests.import_review_command)
app.add_typer(custom_labels.custom_labels_app, name="custom-labels")
app.command("demo")(manifests.demo_command)


def run() -> None:
    app(prog_name="labelsift")
