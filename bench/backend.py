"""Benchmark of the local backend, printed as ratios against baselines measured in the same run.

1. Echo-engine rows/s through a whole job (create dataset, upload, create job, poll to COMPLETED).
2. Upload and download throughput (MB/s) of one large file over loopback signed URLs, and the peak
   RSS growth of the server and of the client, each in its own process (VmHWM - VmRSS before).
   Baseline: a raw local copy of the same bytes. Downloads are also measured, in the same run, in
   paired rounds (medians of ``--rounds``, 5), with plain httpx (``iter_raw``: the library's
   ceiling) and a raw socket (no HTTP library at all), all writing the file to the same disk;
   curl to /dev/null shows what the server can send.

Usage: .venv/bin/python bench/backend.py [--rows 50000] [--size-mb 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchlib import load, machine, rotated, serve

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "bench"


def vm(pid: int | str, field: str) -> int:
    """A /proc/<pid>/status field in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def make_rows(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            body = {"messages": [{"role": "user", "content": f"row {i}: tell me about {i}"}]}
            out.write(json.dumps({"custom_id": f"r{i}", "body": body}) + "\n")


def make_blob(path: Path, size_mb: int) -> None:
    line = (
        b'{"custom_id": "x", "body": {"messages": [{"role": "user", "content": "'
        + b"a" * 200
        + b'"}]}}\n'
    )
    chunk = line * (4 * 1024 * 1024 // len(line))
    with path.open("wb") as out:
        written = 0
        while written < size_mb * 1024 * 1024:
            out.write(chunk)
            written += len(chunk)


def client_for(url: str):  # type: ignore[no-untyped-def]
    if os.environ.get("BENCH_PLAIN_HTTPX"):
        return None
    try:
        from batchops.providers.fireworks.client import FireworksClient
    except ImportError:
        return None
    return FireworksClient(base_url=url, account_id=ACCOUNT, api_key=None, allow_insecure_urls=True)


def create_dataset(http: httpx.Client, dataset_id: str) -> None:
    body = {"datasetId": dataset_id, "dataset": {"userUploaded": {}, "exampleCount": "1"}}
    http.post("/datasets", json=body).raise_for_status()


# --- 1. rows per second ---------------------------------------------------------------------------


def bench_rows(url: str, work: Path, count: int) -> None:
    source = work / "rows.jsonl"
    make_rows(source, count)
    with httpx.Client(base_url=f"{url}/v1/accounts/{ACCOUNT}", timeout=120) as http:
        start = time.perf_counter()
        create_dataset(http, "rows")
        with source.open("rb") as handle:
            http.post(
                "/datasets/rows:upload", files={"file": ("rows.jsonl", handle)}
            ).raise_for_status()
        http.post(
            "/batchInferenceJobs",
            params={"batchInferenceJobId": "rows"},
            json={"model": "m", "inputDatasetId": "rows"},
        ).raise_for_status()
        while (job := http.get("/batchInferenceJobs/rows").json())[
            "state"
        ] != "JOB_STATE_COMPLETED":
            if job["state"] == "JOB_STATE_FAILED":
                raise SystemExit(f"job failed: {job['status']}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
    baseline_start = time.perf_counter()
    with source.open("rb") as handle:  # baseline: parse + serialise each row once, in process
        out = [json.dumps(json.loads(line)) for line in handle]
    baseline = time.perf_counter() - baseline_start
    print(
        f"rows: {count} rows through a whole echo job in {elapsed:.2f} s = "
        f"{count / elapsed:,.0f} rows/s (goal >= 5,000); baseline json parse+dump of the rows "
        f"{count / baseline:,.0f} rows/s; ratio {baseline / elapsed:.2f}  [{len(out)}]"
    )


# --- 2. transfers ---------------------------------------------------------------------------------


def child(mode: str, url: str, path: str) -> None:
    """Runs in a subprocess: one transfer; prints JSON {seconds, rss_growth_kib, how}."""
    before = vm("self", "VmRSS")
    client = client_for(url)
    start = time.perf_counter()
    how = "batchops.providers.fireworks.client.FireworksClient"
    if mode == "upload":
        if client is not None:
            client.upload_dataset_files("blob", [Path(path)])
        else:
            how = plain_upload(url, Path(path))
    elif mode == "download-httpx":
        how = plain_download(url, Path(path))
    elif mode == "download-socket":
        how = socket_download(url, Path(path))
    elif client is not None:
        client.download_dataset("blob", Path(path))
    else:
        how = plain_download(url, Path(path))
    seconds = time.perf_counter() - start
    print(
        json.dumps({"seconds": seconds, "rss_growth_kib": vm("self", "VmHWM") - before, "how": how})
    )


def plain_upload(url: str, path: Path) -> str:
    with httpx.Client(base_url=f"{url}/v1/accounts/{ACCOUNT}", timeout=600) as http:
        size = path.stat().st_size
        urls = http.post(
            "/datasets/blob:getUploadEndpoint", json={"filenameToSize": {path.name: str(size)}}
        ).json()
        with path.open("rb") as handle:
            httpx.put(
                urls["filenameToSignedUrls"][path.name], content=handle, timeout=600
            ).raise_for_status()
        http.post("/datasets/blob:validateUpload", json={}).raise_for_status()
    return "plain httpx streaming"


def plain_download(url: str, dest: Path) -> str:
    with httpx.Client(base_url=f"{url}/v1/accounts/{ACCOUNT}", timeout=600) as http:
        urls = http.get("/datasets/blob:getDownloadEndpoint").json()["filenameToSignedUrls"]
        dest.mkdir(parents=True, exist_ok=True)
        for key, signed in urls.items():
            with (
                httpx.stream("GET", signed, timeout=600) as response,
                (dest / Path(key).name).open("wb") as out,
            ):
                for chunk in response.iter_raw():
                    out.write(chunk)
    return "plain httpx iter_raw"


def socket_download(url: str, dest: Path) -> str:
    """HTTP/1.1 GET over a bare socket, recv_into a 1 MiB buffer: the ceiling without a library."""
    with httpx.Client(base_url=f"{url}/v1/accounts/{ACCOUNT}", timeout=600) as http:
        urls = http.get("/datasets/blob:getDownloadEndpoint").json()["filenameToSignedUrls"]
    dest.mkdir(parents=True, exist_ok=True)
    for key, signed in urls.items():
        target = httpx.URL(signed)
        request = (
            f"GET {target.raw_path.decode()} HTTP/1.1\r\nHost: {target.netloc.decode()}\r\n"
            "Connection: close\r\n\r\n"
        )
        with (
            socket.create_connection((target.host, target.port or 80)) as sock,
            (dest / Path(key).name).open("wb") as out,
        ):
            sock.sendall(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(65536)
            out.write(head.partition(b"\r\n\r\n")[2])
            buffer = bytearray(1 << 20)
            view = memoryview(buffer)
            while count := sock.recv_into(buffer):
                out.write(view[:count])
    return "raw socket"


def run_child(mode: str, url: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, url, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_transfers(
    server: subprocess.Popen[str], url: str, work: Path, size_mb: int, rounds: int
) -> None:
    blob = work / "blob.jsonl"
    make_blob(blob, size_mb)
    size = blob.stat().st_size
    start = time.perf_counter()
    shutil.copyfile(blob, work / "copy.jsonl")
    copy_rate = size / (time.perf_counter() - start) / 1e6
    (work / "copy.jsonl").unlink()
    with httpx.Client(base_url=f"{url}/v1/accounts/{ACCOUNT}") as http:
        create_dataset(http, "blob")
    for mode, target in (("upload", blob), ("download", work / "down")):
        server_before = vm(server.pid, "VmRSS")
        result = run_child(mode, url, target)
        server_growth = (vm(server.pid, "VmHWM") - server_before) / 1024
        rate = size / result["seconds"] / 1e6
        print(
            f"{mode}: {size / 1e6:,.0f} MB in {result['seconds']:.2f} s = {rate:,.0f} MB/s "
            f"(goal >= 200) via {result['how']}; baseline local copy {copy_rate:,.0f} MB/s, "
            f"ratio {rate / copy_rate:.2f}; peak RSS growth: server {server_growth:.1f} MB, "
            f"client {result['rss_growth_kib'] / 1024:.1f} MB (goal <= 64)"
        )
    bench_download_ceilings(url, work, size, rounds)
    bench_curl(url, size)


def bench_download_ceilings(url: str, work: Path, size: int, rounds: int) -> None:
    """The client beside plain httpx and a raw socket in paired rounds (the order rotating),
    medians and per-round ratios: on a shared machine only a ratio in one run means anything."""
    modes = ("download", "download-httpx", "download-socket")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for r in range(rounds):
        for mode in rotated(modes, r):
            shutil.rmtree(work / "down", ignore_errors=True)
            times[mode].append(run_child(mode, url, work / "down")["seconds"])
    rate = {mode: size / statistics.median(values) / 1e6 for mode, values in times.items()}

    def ratio(a: str, b: str) -> float:
        return statistics.median(y / x for x, y in zip(times[a], times[b], strict=True))

    print(
        f"download, median of {rounds} paired rounds: FireworksClient {rate['download']:,.0f} MB/s"
        f" (goal >= 200); plain httpx iter_raw {rate['download-httpx']:,.0f} MB/s; raw socket "
        f"{rate['download-socket']:,.0f} MB/s. Client/httpx "
        f"{ratio('download', 'download-httpx'):.2f}, httpx/socket "
        f"{ratio('download-httpx', 'download-socket'):.2f} (the HTTP library's share)"
    )


def bench_curl(url: str, size: int) -> None:
    """The server's own download capacity, with a C client (curl) instead of httpx."""
    if not shutil.which("curl"):
        return
    with httpx.Client(base_url=f"{url}/v1/accounts/{ACCOUNT}") as http:
        urls = http.get("/datasets/blob:getDownloadEndpoint").json()["filenameToSignedUrls"]
    start = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", os.devnull, *urls.values()], check=True)
    print(
        f"download with curl (server capacity): {size / (time.perf_counter() - start) / 1e6:,.0f}"
        " MB/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5, help="paired download rounds (median)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "PATH"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print(f"machine: {machine()}; {load()}")
    with tempfile.TemporaryDirectory(prefix="batchops-bench-") as tmp:
        work = Path(tmp)
        server, url = serve(work / "data", cwd=ROOT, quiet=False)
        try:
            bench_rows(url, work, args.rows)
            bench_transfers(server, url, work, args.size_mb, args.rounds)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
