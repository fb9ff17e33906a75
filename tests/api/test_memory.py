"""Memory stays flat whatever the file size: 300 MB up (signed PUT), 140 MB up (multipart) and
300 MB down, measured as peak-RSS growth (VmHWM) in a subprocess that runs only the client; the
embedded backend runs here, in the test process, so its memory is not counted.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from batchops.local.config import BackendConfig
from batchops.local.server import EmbeddedServer
from tests.api.conftest import KEY

MIB = 1024 * 1024

SCRIPT = r"""
import hashlib, json, sys
from pathlib import Path
from batchops.providers.fireworks.client import FireworksClient
from batchops.config import Secret
from batchops.providers.fireworks.wire import Dataset

def peak_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM")

base, key, big, medium, dest = sys.argv[1:6]
with FireworksClient(base_url=base, account_id="acme", api_key=Secret(key), timeout=60) as client:
    for name in ("big", "medium"):
        client.create_dataset(name, Dataset(example_count="1", user_uploaded={}))
    client.list_datasets()  # imports and the connection pool are warm before the baseline
    before = peak_kib()
    client.upload_dataset_files("big", [Path(big)])  # > 150 MB: signed-URL PUT
    client.upload_file("medium", Path(medium))  # multipart :upload
    written = client.download_dataset("big", Path(dest))
    after = peak_kib()
digest = hashlib.sha256()
with open(written[0], "rb") as handle:
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
print(json.dumps({"before": before, "after": after, "sha": digest.hexdigest(),
                  "written": [str(p) for p in written]}))
"""


def write_file(path: Path, mib: int) -> str:
    """A file of ``mib`` distinct 1 MiB blocks (so misordered chunks would be caught)."""
    digest = hashlib.sha256()
    pattern = bytes(range(256)) * 4096
    with path.open("wb") as handle:
        for n in range(mib):
            block = n.to_bytes(8, "big") + pattern[8:]
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.e2e
def test_300_mb_up_and_down_with_flat_memory(tmp_path):
    big, medium = tmp_path / "big.jsonl", tmp_path / "medium.jsonl"
    big_sha = write_file(big, 300)
    write_file(medium, 140)
    config = BackendConfig(data_dir=tmp_path / "server", api_key=KEY)
    with EmbeddedServer(config, port=0, worker=False) as server:
        args = [server.base_url, KEY, str(big), str(medium), str(tmp_path / "out")]
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=100
        )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    growth_mib = (report["after"] - report["before"]) / 1024
    assert growth_mib < 64, report
    assert report["sha"] == big_sha
    assert report["written"] == [str(tmp_path / "out" / "big" / "big.jsonl")]
    assert KEY not in done.stdout + done.stderr
