"""``RecentAnswers``: what S3 said of a path moments ago, for a moment only, forgotten around a write."""

from __future__ import annotations

import time

from fsspec_s3reader.recent_answers import RecentAnswers


def test_an_answer_serves_within_its_window_only() -> None:
    answers: RecentAnswers[int] = RecentAnswers(at_most=4)
    answers.put("b/k", 1)
    assert answers.get("b/k", within=60) == 1
    assert answers.get("b/other", within=60) is None
    time.sleep(0.01)
    assert answers.get("b/k", within=0.005) is None
    assert len(answers) == 0  # an answer past its window is dropped


def test_the_oldest_answers_go_first_past_the_limit() -> None:
    answers: RecentAnswers[str] = RecentAnswers(at_most=2)
    answers.put("b/1", "one")
    answers.put("b/2", "two")
    answers.put("b/1", "one again")  # renewed: now the newest
    answers.put("b/3", "three")
    assert [answers.get(path, within=60) for path in ("b/1", "b/2", "b/3")] == ["one again", None, "three"]


def test_forgetting_a_path_forgets_what_lies_below_and_the_folders_above() -> None:
    answers: RecentAnswers[int] = RecentAnswers(at_most=10)
    for path in ("b", "b/d", "b/d/f.parquet", "b/d/sub/g", "b/dx", "b/e/h"):
        answers.put(path, 1)
    answers.forget("b/d")
    assert {path for path in ("b", "b/d", "b/d/f.parquet", "b/d/sub/g", "b/dx", "b/e/h") if answers.get(path, 60)} == {
        "b/dx",
        "b/e/h",
    }
    answers.forget()
    assert len(answers) == 0
