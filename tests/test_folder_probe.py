"""``info``'s probe of a folder brings the first page of its listing, and the ``find`` that follows takes it."""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from fault_proxy import Fault, FaultProxy

from fsspec_s3reader import S3ReaderFileSystem, filesystem
from fsspec_s3reader.folder_probe import (
    first_page_request,
    is_first_page_request,
    is_folder_probe,
    names_a_folder,
    page_copy,
    page_key,
    probe_after,
    probe_answer,
)

PROBE = {"Bucket": "b", "Prefix": "data/", "Delimiter": "/", "MaxKeys": 1}


def _page(*keys: str, truncated: bool = False) -> dict[str, Any]:
    return {
        "Name": "b",
        "Prefix": "data/",
        "KeyCount": len(keys),
        "IsTruncated": truncated,
        "Contents": [{"Key": key, "Size": 1, "ETag": '"e"'} for key in keys],
    }


def test_only_the_question_whether_a_folder_holds_a_key_is_a_probe() -> None:
    assert is_folder_probe(PROBE)
    assert not is_folder_probe({**PROBE, "MaxKeys": 2})
    assert not is_folder_probe({**PROBE, "Delimiter": ""})
    assert not is_folder_probe({**PROBE, "Prefix": "data"})  # a stem, not a folder
    assert not is_folder_probe({**PROBE, "RequestPayer": "requester"})  # the page would have to ask the same
    assert not is_folder_probe({**PROBE, "ContinuationToken": "t"})


def test_the_probe_is_sent_as_the_first_page_that_a_find_of_the_folder_asks() -> None:
    request = first_page_request(PROBE)
    assert request == {"Bucket": "b", "Prefix": "data/"}
    assert is_first_page_request(request)
    assert is_first_page_request({**request, "Delimiter": ""})  # as s3fs's find sends it
    assert not is_first_page_request({**request, "Delimiter": "/"})  # ls: one level only
    assert not is_first_page_request({**request, "ContinuationToken": "t"})  # a later page
    assert not is_first_page_request({**request, "MaxKeys": 2})
    assert page_key(PROBE) == page_key(request) == "b/data"


def test_a_plain_head_of_a_name_without_extension_reads_as_a_folders() -> None:
    assert names_a_folder({"Bucket": "b", "Key": "data"})
    assert names_a_folder({"Bucket": "b", "Key": "v1.2/year=2024"})
    assert not names_a_folder({"Bucket": "b", "Key": "data/a.parquet"})
    assert not names_a_folder({"Bucket": "b", "Key": "v1.2"})
    assert not names_a_folder({"Bucket": "b", "Key": "data/.hidden"})
    assert not names_a_folder({"Bucket": "b", "Key": "data", "VersionId": "v"})  # the page would not say it
    assert probe_after({"Bucket": "b", "Key": "data"}) == PROBE
    assert page_key(probe_after({"Bucket": "b", "Key": "data/"})) == "b/data"


def test_the_probes_answer_is_the_pages_first_key_or_the_sub_folder_it_lies_in() -> None:
    direct = probe_answer(_page("data/a.parquet", "data/z/b.parquet"), PROBE)
    assert direct["KeyCount"] == 1
    assert [entry["Key"] for entry in direct["Contents"]] == ["data/a.parquet"]
    assert "CommonPrefixes" not in direct
    nested = probe_answer(_page("data/sub/deeper/a", "data/z"), PROBE)
    assert nested["KeyCount"] == 1 and nested["CommonPrefixes"] == [{"Prefix": "data/sub/"}]
    assert "Contents" not in nested
    marker = probe_answer(_page("data/"), PROBE)  # a folder's marker object is a key of its own
    assert [entry["Key"] for entry in marker["Contents"]] == ["data/"]
    empty = probe_answer({"Name": "b", "Prefix": "data/", "KeyCount": 0, "IsTruncated": False}, PROBE)
    assert empty["KeyCount"] == 0 and "Contents" not in empty and "CommonPrefixes" not in empty


def test_a_kept_page_is_handed_out_as_a_copy_whose_entries_may_be_changed() -> None:
    page = _page("data/a", "data/b")
    handed = page_copy(page)
    handed["Contents"][0]["name"] = "b/data/a"  # s3fs fills in each entry
    handed["Contents"].append({"Key": "data/c"})
    assert page == _page("data/a", "data/b")


@pytest.fixture(autouse=True)
def _answers_kept_for_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers and pages are kept for a moment (2 s); on a loaded machine a test's steps may take longer.

    The request counts asserted here are about what is asked again within the
    moment, not about its length: the tests that let it pass set it to 0.
    """
    monkeypatch.setattr(filesystem, "_DESCRIBED_FOR_SECONDS", 60.0)


def _fs(storage_options: dict[str, Any], **options: Any) -> S3ReaderFileSystem:
    return S3ReaderFileSystem(skip_instance_cache=True, **storage_options, **options)


def _files(bucket: str) -> dict[str, bytes]:
    return {
        f"{bucket}/probed/a.bin": b"a",
        f"{bucket}/probed/sub/b.bin": b"bb",
        f"{bucket}/probed/sub/deeper/c.bin": b"ccc",
        f"{bucket}/probed-sibling/d.bin": b"d",
    }


def test_a_find_after_an_info_of_its_folder_sends_nothing_and_finds_what_a_fresh_listing_finds(
    storage_options: dict, bucket: str
) -> None:
    fs = _fs(storage_options)
    fs.pipe(_files(bucket))
    fs.invalidate_cache()
    fs.reset_stats()
    assert fs.info(f"{bucket}/probed")["type"] == "directory"
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 1)  # the HEAD, then the page
    found = fs.find(f"{bucket}/probed", withdirs=True, detail=True)
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 1)
    fresh = _fs(storage_options, use_listings_cache=False)
    assert found == fresh.find(f"{bucket}/probed", withdirs=True, detail=True)
    assert sorted(found) == [
        f"{bucket}/probed",
        f"{bucket}/probed/a.bin",
        f"{bucket}/probed/sub",
        f"{bucket}/probed/sub/b.bin",
        f"{bucket}/probed/sub/deeper",
        f"{bucket}/probed/sub/deeper/c.bin",
    ]
    assert fresh.info(f"{bucket}/probed") == fs.info(f"{bucket}/probed", refresh=True)


def test_a_folder_of_sub_folders_only_and_a_missing_path_answer_as_before(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options)
    fs.pipe(_files(bucket))
    assert fs.info(f"{bucket}/probed/sub")["type"] == "directory"
    assert fs.isdir(f"{bucket}/probed/sub")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{bucket}/probed/nothing-here")
    assert not fs.exists(f"{bucket}/probed/nothing-here")
    assert fs.find(f"{bucket}/probed/nothing-here") == []


def test_a_write_into_the_folder_after_its_probe_is_found(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options)
    fs.pipe(_files(bucket))
    fs.info(f"{bucket}/probed")
    fs.pipe_file(f"{bucket}/probed/new.bin", b"new")  # a write forgets the folders above it
    assert f"{bucket}/probed/new.bin" in fs.find(f"{bucket}/probed")
    fs.info(f"{bucket}/probed")
    fs.rm(f"{bucket}/probed/a.bin")
    assert f"{bucket}/probed/a.bin" not in fs.find(f"{bucket}/probed")


def test_the_page_serves_only_for_a_moment_and_only_with_listings_cached(
    storage_options: dict, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = _fs(storage_options)
    fs.pipe(_files(bucket))
    fs.info(f"{bucket}/probed")
    _fs(storage_options).pipe_file(f"{bucket}/probed/other.bin", b"o")  # written by another client
    assert f"{bucket}/probed/other.bin" not in fs.find(f"{bucket}/probed")  # within the moment: the page
    monkeypatch.setattr(filesystem, "_DESCRIBED_FOR_SECONDS", 0.0)
    assert f"{bucket}/probed/other.bin" in fs.find(f"{bucket}/probed")  # the moment passed: S3 is asked
    uncached = _fs(storage_options, use_listings_cache=False)
    uncached.info(f"{bucket}/probed")
    uncached.reset_stats()
    uncached.find(f"{bucket}/probed")
    assert uncached.stats.other_requests == 1


def test_a_folder_of_more_than_a_page_is_found_whole_from_the_probes_page_on(
    storage_options: dict, bucket: str
) -> None:
    fs = _fs(storage_options)
    names = [f"{bucket}/paged/{index:05d}" for index in range(1003)]
    fs.pipe(dict.fromkeys(names, b"x"))
    fs.invalidate_cache()
    fs.reset_stats()
    assert fs.info(f"{bucket}/paged")["type"] == "directory"
    assert fs.find(f"{bucket}/paged") == names
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 2)  # the probe's page of 1000 keys, the next


def test_a_dataset_is_discovered_with_one_listing_and_read_as_from_local_bytes(
    storage_options: dict, bucket: str, tmp_path: Any
) -> None:
    fs = _fs(storage_options)
    table = pa.table({"x": list(range(30)), "y": [str(value) for value in range(30)]})
    for index in range(3):
        local = tmp_path / f"part-{index}.parquet"
        pq.write_table(table.slice(10 * index, 10), local)
        fs.pipe_file(f"{bucket}/discovered/part-{index}.parquet", local.read_bytes())
    fs.invalidate_cache()
    fs.reset_stats()
    dataset = pads.dataset(f"{bucket}/discovered", filesystem=fs, format="parquet")
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 1)  # info of the folder; its files from the page
    assert dataset.to_table().sort_by("x").equals(pads.dataset(str(tmp_path), format="parquet").to_table().sort_by("x"))


def test_a_version_aware_filesystem_probes_for_one_key_as_s3fs_does(storage_options: dict, bucket: str) -> None:
    fs = _fs(storage_options, version_aware=True)
    fs.pipe(_files(bucket))
    fs.invalidate_cache()
    fs.reset_stats()
    assert fs.info(f"{bucket}/probed")["type"] == "directory"
    assert fs.find(f"{bucket}/probed") == _fs(storage_options).find(f"{bucket}/probed")
    assert fs.stats.other_requests == 2  # its listing asks for versions: the probe's page would not serve it


_LIST = "list-type=2"
"""What a ListObjectsV2 request's path holds."""


def _lists_seen_while_heading(proxy: FaultProxy, path: str, wait: float) -> list[bool]:
    """Hold each HEAD of ``path`` until a LIST reaches the proxy (at most ``wait`` s); say whether one did."""
    seen: list[bool] = []

    def listed() -> bool:
        return any(_LIST in request.path for request in proxy.requests_of("GET"))

    def hold(_: str) -> None:
        deadline = time.monotonic() + wait
        while not listed() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(listed())

    proxy.add(Fault.run(hold), method="HEAD", path_contains=path)
    return seen


def test_the_head_of_a_folders_name_has_the_folders_page_asked_for_beside_it(
    storage_options: dict, proxied_options: dict, fault_proxy: FaultProxy, bucket: str
) -> None:
    fs = _fs(proxied_options)
    _fs(storage_options).pipe(_files(bucket))  # the fault proxy forwards no bodies
    seen = _lists_seen_while_heading(fault_proxy, f"/{bucket}/probed", wait=10.0)
    assert fs.info(f"{bucket}/probed")["type"] == "directory"
    assert seen == [True]  # the LIST went out while the HEAD was still unanswered
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 1)
    assert fs.find(f"{bucket}/probed") == _fs(proxied_options).find(f"{bucket}/probed")
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 1)


def test_a_name_with_an_extension_is_probed_only_after_its_head(
    storage_options: dict, proxied_options: dict, fault_proxy: FaultProxy, bucket: str
) -> None:
    fs = _fs(proxied_options)
    _fs(storage_options).pipe_file(f"{bucket}/v1.2/a.bin", b"a")
    seen = _lists_seen_while_heading(fault_proxy, f"/{bucket}/v1.2", wait=0.5)
    assert fs.info(f"{bucket}/v1.2")["type"] == "directory"
    assert seen == [False]
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 1)


def test_an_object_named_like_a_folder_answers_as_the_object_for_one_list_more(
    storage_options: dict, bucket: str
) -> None:
    fs = _fs(storage_options)
    fs.pipe_file(f"{bucket}/LICENSE", b"text")
    fs.invalidate_cache()
    fs.reset_stats()
    described = fs.info(f"{bucket}/LICENSE")
    assert (described["type"], described["size"]) == ("file", 4)
    assert described == _fs(storage_options, use_listings_cache=False).info(f"{bucket}/LICENSE")
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 1)  # the page beside the HEAD served nobody
    assert fs.exists(f"{bucket}/LICENSE") and fs.isfile(f"{bucket}/LICENSE")
    assert (fs.stats.head_requests, fs.stats.other_requests) == (1, 1)


def test_a_page_that_failed_beside_the_head_is_heard_out_and_the_probe_asks_again(
    storage_options: dict, proxied_options: dict, fault_proxy: FaultProxy, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    fs = _fs(proxied_options)
    _fs(storage_options).pipe({**_files(bucket), f"{bucket}/LICENSE": b"text"})
    fault_proxy.add(Fault.status(403), method="GET", path_contains=_LIST, times=2)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert fs.info(f"{bucket}/LICENSE")["type"] == "file"  # its page failed, and nobody waited for it
        assert fs.info(f"{bucket}/probed")["type"] == "directory"  # its page failed; the probe's own arrived
        gc.collect()
    assert len([request for request in fault_proxy.requests_of("GET") if _LIST in request.path]) == 3
    assert not [record for record in caplog.records if "never retrieved" in record.getMessage()]


def test_after_two_objects_named_like_folders_in_a_row_the_page_waits_for_a_404_again(
    storage_options: dict, bucket: str
) -> None:
    fs = _fs(storage_options)
    fs.pipe({**_files(bucket), **{f"{bucket}/objects/{name}": b"x" for name in ("ab12", "cd34", "ef56", "gh78")}})
    fs.invalidate_cache()
    fs.reset_stats()
    for name in ("ab12", "cd34", "ef56"):  # a store of objects without extensions, asked one after another
        assert fs.info(f"{bucket}/objects/{name}")["type"] == "file"
    assert (fs.stats.head_requests, fs.stats.other_requests) == (3, 2)  # two wrong guesses, then none
    assert fs.info(f"{bucket}/probed")["type"] == "directory"  # asked after its 404: right again
    assert (fs.stats.head_requests, fs.stats.other_requests) == (4, 3)
    assert fs.info(f"{bucket}/objects/gh78")["type"] == "file"  # guessed again: one LIST more
    assert (fs.stats.head_requests, fs.stats.other_requests) == (5, 4)
