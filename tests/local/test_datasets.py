"""Dataset endpoints over a real loopback socket: create, get, list, patch, delete, uploads."""

from __future__ import annotations

import httpx

from tests.local.conftest import ACCOUNT, rows, upload_rows


def test_create_requires_example_count_for_uploaded(client: httpx.Client) -> None:
    answer = client.post("/datasets", json={"datasetId": "d1", "dataset": {"userUploaded": {}}})
    assert answer.status_code == 400
    assert answer.json() == {
        "code": 3,
        "message": "example_count is required for uploaded datasets",
        "details": [],
    }
    assert client.get("/datasets/d1").status_code == 404


def test_create_accepts_snake_case_and_ignores_unknown_fields(client: httpx.Client) -> None:
    body = {
        "datasetId": "d1",
        "bogus": 1,
        "dataset": {"userUploaded": {}, "example_count": "5", "whatever": True},
    }
    created = client.post("/datasets", json=body).json()
    assert created["name"] == f"accounts/{ACCOUNT}/datasets/d1"
    assert created["exampleCount"] == "5" and created["state"] == "UPLOADING"
    assert "whatever" not in client.get("/datasets/d1").json()


def test_duplicate_and_invalid_ids(client: httpx.Client) -> None:
    body = {"datasetId": "d1", "dataset": {"exampleCount": "1", "userUploaded": {}}}
    assert client.post("/datasets", json=body).status_code == 200
    again = client.post("/datasets", json=body)
    assert again.status_code == 409 and again.json()["code"] == 6
    bad = client.post("/datasets", json={**body, "datasetId": "Bad_ID"})
    assert bad.status_code == 400 and bad.json()["code"] == 3


def test_list_pages_with_opaque_tokens(client: httpx.Client) -> None:
    for i in range(7):
        client.post("/datasets", json={"datasetId": f"d{i}", "dataset": {"displayName": "x"}})
    names, token, pages = [], "", 0
    while True:
        page = client.get("/datasets", params={"pageSize": 3, "pageToken": token}).json()
        assert page["totalSize"] == 7
        names += [d["name"].rsplit("/", 1)[-1] for d in page["datasets"]]
        pages += 1
        token = page.get("nextPageToken", "")
        if not token:
            break
        assert not token.isdigit()
    assert names == [f"d{i}" for i in range(7)] and pages == 3
    forged = client.get("/datasets", params={"pageToken": "abc"})
    assert forged.status_code == 400


def test_patch_and_delete(client: httpx.Client) -> None:
    client.post("/datasets", json={"datasetId": "d1", "dataset": {"displayName": "a"}})
    patched = client.patch("/datasets/d1", json={"displayName": "b"}).json()
    assert patched["displayName"] == "b"
    assert client.delete("/datasets/d1").json() == {}
    gone = client.get("/datasets/d1")
    assert gone.status_code == 404 and gone.json()["code"] == 5


def test_direct_upload_makes_dataset_ready(client: httpx.Client) -> None:
    data = rows(3)
    upload_rows(client, "d1", data)
    assert client.get("/datasets/d1").json()["state"] == "READY"
    urls = client.get("/datasets/d1:getDownloadEndpoint").json()["filenameToSignedUrls"]
    assert list(urls) == ["dataset/d1/in.jsonl"]
    assert httpx.get(urls["dataset/d1/in.jsonl"]).content == data


def test_upload_answer_is_snake_case(client: httpx.Client) -> None:
    client.post("/datasets", json={"datasetId": "d1", "dataset": {"exampleCount": "1"}})
    answer = client.post("/datasets/d1:upload", files={"file": ("a.jsonl", b"x" * 10)}).json()
    assert answer["id"] == f"accounts/{ACCOUNT}/datasets/d1"
    assert answer["bytes"] == 10 and answer["filename"] == "a.jsonl" and answer["object"] == "file"
    assert isinstance(answer["created_at"], int)


def test_signed_url_flow(client: httpx.Client) -> None:
    client.post("/datasets", json={"datasetId": "d1", "dataset": {"exampleCount": "1"}})
    data = rows(5)
    urls = client.post(
        "/datasets/d1:getUploadEndpoint", json={"filenameToSize": {"a.jsonl": str(len(data))}}
    ).json()
    url = urls["filenameToSignedUrls"]["a.jsonl"]
    assert url.startswith(client.base_url.scheme + "://")
    not_yet = client.post("/datasets/d1:validateUpload", json={})
    assert not_yet.status_code == 400
    short = httpx.put(url, content=data[:-1])
    assert short.status_code == 400
    assert httpx.put(url, content=data).status_code == 200
    assert client.post("/datasets/d1:validateUpload", json={}).json() == {}
    assert client.get("/datasets/d1").json()["state"] == "READY"


def test_validate_refuses_empty_files(client: httpx.Client) -> None:
    client.post("/datasets", json={"datasetId": "d1", "dataset": {"exampleCount": "1"}})
    urls = client.post("/datasets/d1:getUploadEndpoint", json={"filenameToSize": {"e.jsonl": "0"}})
    assert httpx.put(urls.json()["filenameToSignedUrls"]["e.jsonl"], content=b"").status_code == 200
    refused = client.post("/datasets/d1:validateUpload", json={})
    assert refused.status_code == 400 and "empty" in refused.json()["message"]
    assert client.get("/datasets/d1").json()["state"] == "UPLOADING"


def test_get_upload_endpoint_overwrites_file_set(client: httpx.Client) -> None:
    client.post("/datasets", json={"datasetId": "d1", "dataset": {"exampleCount": "1"}})
    first = client.post("/datasets/d1:getUploadEndpoint", json={"filenameToSize": {"a.jsonl": "2"}})
    httpx.put(first.json()["filenameToSignedUrls"]["a.jsonl"], content=b"{}")
    client.post("/datasets/d1:getUploadEndpoint", json={"filenameToSize": {"b.jsonl": "2"}})
    assert client.post("/datasets/d1:validateUpload", json={}).status_code == 400  # b missing


def test_download_endpoint_is_a_bodyless_get(client: httpx.Client) -> None:
    upload_rows(client, "d1", rows(1))
    with_body = client.request("GET", "/datasets/d1:getDownloadEndpoint", content=b"{}")
    assert with_body.status_code == 400
    assert client.post("/datasets/d1:getDownloadEndpoint", json={}).status_code == 405
    assert client.get("/datasets/nope:getDownloadEndpoint").status_code == 404


def test_upload_without_file_field_or_truncated_is_refused(client: httpx.Client) -> None:
    client.post(
        "/datasets", json={"datasetId": "mp", "dataset": {"userUploaded": {}, "exampleCount": "1"}}
    )
    no_file = client.post("/datasets/mp:upload", files={"other": ("x.jsonl", b"{}\n")})
    assert no_file.status_code == 400
    assert "no 'file' field" in no_file.json()["message"]
    truncated = client.post(
        "/datasets/mp:upload",
        content=b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.jsonl"\r\n\r\n{',
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert truncated.status_code == 400
    assert client.get("/datasets/mp").json()["state"] == "UPLOADING"
    extra_parts = client.post(
        "/datasets/mp:upload",
        files={"note": ("n.txt", b"ignored"), "file": ("in.jsonl", b'{"a": 1}\n')},
    )
    assert extra_parts.status_code == 200, extra_parts.text
    assert extra_parts.json()["bytes"] == len(b'{"a": 1}\n')
    assert extra_parts.json()["filename"] == "in.jsonl"


def test_patch_carries_out_format_and_example_count_or_refuses(client: httpx.Client) -> None:
    client.post("/datasets", json={"datasetId": "d1", "dataset": {"displayName": "a"}})
    patched = client.patch("/datasets/d1", json={"format": "COMPLETION", "exampleCount": "7"})
    assert patched.status_code == 200
    held = client.get("/datasets/d1").json()
    assert held["format"] == "COMPLETION" and held["exampleCount"] == "7"
    for body in ({"format": "NOPE"}, {"exampleCount": "-1"}, {"externalUrl": "gs://x"}):
        refused = client.patch("/datasets/d1", json=body)
        assert refused.status_code == 400 and refused.json()["code"] == 3
    assert client.get("/datasets/d1").json()["format"] == "COMPLETION"


def test_create_from_a_source_dataset_is_refused_not_faked(client: httpx.Client) -> None:
    client.post("/datasets", json={"datasetId": "src", "dataset": {"exampleCount": "1"}})
    body = {"datasetId": "copy", "sourceDatasetId": "src", "dataset": {"exampleCount": "1"}}
    answer = client.post("/datasets", json=body)
    assert answer.status_code == 501
    assert answer.json()["code"] == 12 and "sourceDatasetId" in answer.json()["message"]
    assert client.get("/datasets/copy").status_code == 404
