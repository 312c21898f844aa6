"""`python -m labelsift.cli`: the `labelsift` command."""

from labelsift.cli import run

run()
