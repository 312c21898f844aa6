"""`python -m labelsift.cli`: the `labelsift` command."""

from labelsift.cli import run

if __name__ == "__main__":
    run()
