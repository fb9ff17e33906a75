"""Uploads and downloads against the in-memory fake: bytes held, names, credentials, refusals."""

from __future__ import annotations

import os

import httpx
import pytest

from batchops.errors import ApiError, NotFoundError
from batchops.providers.fireworks.wire import Dataset


@pytest.fixture
def ready(make_client, fake):
    """A client and a created dataset d1."""
    client = make_client(fake.handler)
    client.create_dataset("d1", Dataset(example_count="1", user_uploaded={}))
    return client


def shard(tmp_path, name, size):
    path = tmp_path / name
    path.write_bytes((bytes(range(251)) * (size // 251 + 1))[:size])
    return path


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_direct_upload_streams_the_file_as_multipart(ready, fake, tmp_path):
    file = shard(tmp_path, "in put.jsonl", 3 * 1024 * 1024 + 7)
    progress: list[int] = []
    answer = ready.upload_file("d1", file, progress=progress.append)
    assert answer.bytes == file.stat().st_size and answer.filename == "in put.jsonl"
    assert fake.files["d1"] == {"in put.jsonl": file.read_bytes()}
    assert sum(progress) == file.stat().st_size and max(progress) <= 1024 * 1024
    assert fake.datasets["d1"]["state"] == "READY"


def test_one_small_file_goes_through_upload(ready, fake, tmp_path):
    ready.upload_dataset_files("d1", [shard(tmp_path, "a.jsonl", 100)])
    assert fake.files["d1"]["a.jsonl"] == (tmp_path / "a.jsonl").read_bytes()
    assert not any(":getUploadEndpoint" in s.path for s in fake.seen)


def test_several_shards_use_one_upload_endpoint_call_and_signed_puts(ready, fake, tmp_path):
    files = [shard(tmp_path, f"part-{n}.jsonl", 1000 * (n + 1)) for n in range(3)]
    progress: list[int] = []
    ready.upload_dataset_files("accounts/acme/datasets/d1", files, progress=progress.append)
    assert fake.files["d1"] == {f.name: f.read_bytes() for f in files}
    assert fake.datasets["d1"]["state"] == "READY"  # validateUpload accepted the set
    assert sum(progress) == sum(f.stat().st_size for f in files)
    assert [s.path for s in fake.seen].count("/v1/accounts/acme/datasets/d1:getUploadEndpoint") == 1


def test_credentials_go_to_api_calls_but_never_to_signed_urls(ready, fake, tmp_path):
    files = [shard(tmp_path, f"p{n}.jsonl", 10) for n in range(2)]
    ready.upload_dataset_files("d1", files)
    ready.download_dataset("d1", tmp_path / "out")
    storage = [s for s in fake.seen if s.host == fake.STORAGE]
    api = [s for s in fake.seen if s.host != fake.STORAGE]
    assert {s.method for s in storage} == {"PUT", "GET"}
    assert all(s.authorization is None for s in storage)
    assert all(fake.KEY not in str(s.headers) for s in storage)
    assert all(s.authorization == f"Bearer {fake.KEY}" for s in api)


def test_a_failed_signed_put_is_resent_whole(make_client, fake, tmp_path):
    failures = iter([httpx.Response(503), httpx.Response(500)])

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            answer = next(failures, None)
            if answer is not None:
                request.read()
                return answer
        return fake.handler(request)

    client = make_client(flaky)
    client.create_dataset("d1", Dataset(example_count="1"))
    files = [shard(tmp_path, "a.jsonl", 2_500_000), shard(tmp_path, "b.jsonl", 10)]
    progress: list[int] = []
    client.upload_dataset_files("d1", files, progress=progress.append)
    assert fake.files["d1"] == {f.name: f.read_bytes() for f in files}
    assert sum(progress) == 2_500_010  # rewound on each retry


def test_download_keeps_the_dataset_folder_and_writes_the_bytes(ready, fake, tmp_path):
    fake.files["d1"] = {"BIJOutputSet.jsonl": b'{"custom_id": "1"}\n', "error-data": b""}
    dest = tmp_path / "out"
    progress: list[int] = []
    written = ready.download_dataset("d1", dest, progress=progress.append)
    assert sorted(written) == [dest / "d1" / "BIJOutputSet.jsonl", dest / "d1" / "error-data"]
    assert (dest / "d1" / "BIJOutputSet.jsonl").read_bytes() == b'{"custom_id": "1"}\n'
    assert (dest / "d1" / "error-data").read_bytes() == b""
    assert tree(dest) == ["d1", "d1/BIJOutputSet.jsonl", "d1/error-data"]
    assert sum(progress) == 19


def test_downloads_ask_for_identity_and_still_decode_an_encoded_body(ready, fake, tmp_path):
    body = b'{"custom_id": "1"}\n' * 1000
    fake.files["d1"] = {"BIJOutputSet.jsonl": body}
    ready.download_dataset("d1", tmp_path / "plain")
    assert fake.seen[-1].headers["accept-encoding"] == "identity"
    fake.gzip_downloads = True
    ready.download_dataset("d1", tmp_path / "gz")
    assert (tmp_path / "plain" / "d1" / "BIJOutputSet.jsonl").read_bytes() == body
    assert (tmp_path / "gz" / "d1" / "BIJOutputSet.jsonl").read_bytes() == body


def test_lineage_download_asks_for_it_and_keeps_files_apart(ready, fake, tmp_path):
    fake.files["d1"] = {"a": b"one", "b": b"two"}
    fake.download_keys["d1"] = {
        "dataset/d0/BIJOutputSet.jsonl": "a",
        "dataset/d1/BIJOutputSet.jsonl": "b",
    }
    ready.download_dataset("d1", tmp_path, lineage=True)
    assert (tmp_path / "d0" / "BIJOutputSet.jsonl").read_bytes() == b"one"
    assert (tmp_path / "d1" / "BIJOutputSet.jsonl").read_bytes() == b"two"
    assert fake.seen[-3].params == {"downloadLineage": "true"}


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/x",
        "/abs",
        "dataset/../../x",
        "dataset/d1/..",
        "a\\..\\b",
        "a//b",
        "x\x00y",
        "dataset/d1/./x",
        "",
    ],
)
def test_malicious_names_never_write_outside_dest(key, ready, fake, tmp_path):
    fake.files["d1"] = {"BIJOutputSet.jsonl": b"good", "evil": b"evil"}
    fake.download_keys["d1"] = {"dataset/d1/BIJOutputSet.jsonl": "BIJOutputSet.jsonl", key: "evil"}
    dest = tmp_path / "area" / "dest"
    before = tree(tmp_path)
    with pytest.raises(ApiError, match="refusing"):
        ready.download_dataset("d1", dest)
    assert tree(tmp_path) == before  # refused before anything was written


def test_a_symlink_out_of_dest_is_refused(ready, fake, tmp_path):
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    (dest / "d1").symlink_to(outside)
    fake.files["d1"] = {"BIJOutputSet.jsonl": b"x"}
    with pytest.raises(ApiError, match="leaves the destination"):
        ready.download_dataset("d1", dest)
    assert list(outside.iterdir()) == []


def test_interrupted_download_is_retried_and_leaves_no_partial_files(make_client, fake, tmp_path):
    class Broken(httpx.SyncByteStream):
        def __iter__(self):
            yield b"half of it"
            raise httpx.ReadError("connection reset")

    broke = []

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.host == fake.STORAGE and not broke:
            broke.append(1)
            return httpx.Response(200, stream=Broken())
        return fake.handler(request)

    client = make_client(flaky)
    client.create_dataset("d1", Dataset(example_count="1"))
    fake.files["d1"] = {"BIJOutputSet.jsonl": b"the whole file\n"}
    progress: list[int] = []
    client.download_dataset("d1", tmp_path, progress=progress.append)
    assert tree(tmp_path) == ["d1", "d1/BIJOutputSet.jsonl"]
    assert (tmp_path / "d1" / "BIJOutputSet.jsonl").read_bytes() == b"the whole file\n"
    assert sum(progress) == 15


def test_a_failed_download_leaves_nothing_behind(ready, fake, tmp_path):
    fake.download_keys["d1"] = {"dataset/d1/BIJOutputSet.jsonl": "missing"}
    with pytest.raises(NotFoundError) as info:
        ready.download_dataset("d1", tmp_path)
    assert info.value.path == f"{fake.STORAGE}/bucket/down/d1/missing"  # no signature in errors
    assert "sig123" not in str(info.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_plain_http_signed_urls_are_refused_for_a_remote_api(make_client, fake_class, tmp_path):
    fake = fake_class(storage_scheme="http")
    client = make_client(fake.handler)
    client.create_dataset("d1", Dataset(example_count="1"))
    fake.files["d1"] = {"f": b"x"}
    files = [shard(tmp_path, "a.jsonl", 5), shard(tmp_path, "b.jsonl", 5)]
    with pytest.raises(ApiError, match="refusing a http signed URL"):
        client.upload_dataset_files("d1", files)
    with pytest.raises(ApiError, match="refusing a http signed URL"):
        client.download_dataset("d1", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert all(s.host != fake.STORAGE for s in fake.seen)


@pytest.mark.parametrize(
    "options", [{"base_url": "http://127.0.0.1:8080"}, {"allow_insecure_urls": True}]
)
def test_plain_http_signed_urls_are_fine_locally_or_when_allowed(
    options, make_client, fake_class, tmp_path
):
    fake = fake_class(storage_scheme="http")
    client = make_client(fake.handler, **options)
    client.create_dataset("d1", Dataset(example_count="1"))
    fake.files["d1"] = {"f": b"x"}
    client.download_dataset("d1", tmp_path)
    assert (tmp_path / "d1" / "f").read_bytes() == b"x"


def test_distinct_basenames_are_required(ready, tmp_path):
    (tmp_path / "a").mkdir()
    one, two = shard(tmp_path, "x.jsonl", 3), shard(tmp_path / "a", "x.jsonl", 3)
    with pytest.raises(ValueError, match="distinct"):
        ready.upload_dataset_files("d1", [one, two])
    assert os.listdir(tmp_path / "a") == ["x.jsonl"]
