"""Folders' first pages on their way or arrived: waited for by whoever asks, failures serving nobody."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from fsspec_s3reader.folder_pages import WRONG_GUESSES_AT_MOST, FolderPages, Page

PAGE: Page = {"Name": "b", "Prefix": "data/", "KeyCount": 1, "Contents": [{"Key": "data/a"}]}


def test_a_page_on_its_way_is_waited_for_and_a_page_arrived_is_taken_without_a_request() -> None:
    async def scenario() -> None:
        pages = FolderPages(4)
        release = asyncio.Event()
        sent = []

        async def request() -> Page:
            sent.append(1)
            await release.wait()
            return PAGE

        pages.send("b/data", request)
        assert pages.asked("b/data", 2.0) and not pages.asked("b/other", 2.0)
        waiting = asyncio.ensure_future(pages.page("b/data", 2.0))
        await asyncio.sleep(0)
        assert not waiting.done()
        release.set()
        assert await waiting == PAGE
        assert await pages.page("b/data", 2.0) == PAGE
        assert await pages.page("b/data", 0.0) is None  # its moment passed
        assert sent == [1]

    asyncio.run(scenario())


def test_a_waiter_cancelled_leaves_the_request_to_the_others() -> None:
    async def scenario() -> None:
        pages = FolderPages(4)
        release = asyncio.Event()

        async def request() -> Page:
            await release.wait()
            return PAGE

        pages.send("b/data", request)
        impatient = asyncio.ensure_future(pages.page("b/data", 2.0))
        patient = asyncio.ensure_future(pages.page("b/data", 2.0))
        await asyncio.sleep(0)
        impatient.cancel()
        release.set()
        assert await patient == PAGE
        assert impatient.cancelled()

    asyncio.run(scenario())


def test_a_failed_page_serves_nobody_and_is_heard_out(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        pages = FolderPages(4)

        async def request() -> Page:
            raise PermissionError("AccessDenied")

        sent = pages.send("b/data", request)
        await asyncio.wait([sent])
        assert await pages.page("b/data", 2.0) is None
        del sent

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert not [record for record in caplog.records if "never retrieved" in record.getMessage()]


def test_forgetting_a_path_forgets_its_folders_page_and_those_above_and_below() -> None:
    async def scenario() -> None:
        pages = FolderPages(4)

        async def request() -> Page:
            return PAGE

        for folder in ("b/data", "b/data/sub", "b/other"):
            await pages.send(folder, request)
        pages.forget("b/data/sub/new.bin")
        assert [pages.asked(folder, 2.0) for folder in ("b/data", "b/data/sub", "b/other")] == [False, False, True]

    asyncio.run(scenario())


def test_guesses_stop_after_wrong_ones_in_a_row_and_resume_at_a_right_one() -> None:
    pages = FolderPages(4)
    for _ in range(WRONG_GUESSES_AT_MOST):
        assert pages.guesses()
        pages.head_answered(object_found=True)
    assert not pages.guesses()
    pages.head_answered(object_found=False)
    assert pages.guesses()
