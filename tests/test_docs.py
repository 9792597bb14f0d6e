"""Every example in docs/ runs against an embedded S3 server, so the documentation cannot drift from the code.

Examples are the ``python`` blocks, and the ``bash`` blocks that run the
command line (each line ``python -m fsspec_s3reader ...``, run in-process,
exit status 0 required). The examples of one page run in order in one
namespace, as a reader would run them in one session. Before the guides run, the setup block of
``docs/guides/local-setup.md`` starts the server and creates the objects they
read, exactly as that page tells a reader to. A block preceded by
``<!-- docs-test: skip (why) -->`` is not run; the reason is required and such
blocks must stay rare.
"""

from __future__ import annotations

import copy
import logging
import re
import shlex
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest

from fsspec_s3reader import constructor
from fsspec_s3reader.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs"
SETUP_PAGE = DOCS / "guides" / "local-setup.md"
MAX_SKIPPED = 2

_BLOCK = re.compile(
    r"(?:<!-- docs-test: (?P<kind>[\w-]+)(?P<reason>[^>]*?)-->\n)?^```(?P<language>python|bash)\n(?P<code>.*?)^```$",
    re.S | re.M,
)
CLI = "python -m fsspec_s3reader "

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


@dataclass(frozen=True)
class Example:
    page: Path
    line: int
    language: str
    code: str
    kind: str | None
    reason: str

    def run(self, namespace: dict[str, Any]) -> None:
        if self.language == "bash":
            for number, command in enumerate(self.code.splitlines(), start=self.line):
                argv = shlex.split(command.removeprefix(CLI))
                assert main(argv) == 0, f"{self.page.name}:{number}: {command}"
            return
        # Padding with blank lines makes a traceback name the line in the Markdown file.
        source = "\n" * (self.line - 1) + self.code
        exec(compile(source, str(self.page), "exec"), namespace)


def examples(page: Path) -> list[Example]:
    text = page.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        if match["language"] == "bash" and CLI not in match["code"]:
            continue  # installing, starting servers: set-up for the reader, not an example of ours
        code_line = text.count("\n", 0, match.start("code")) + 1
        reason = (match["reason"] or "").strip(" ()")
        found.append(Example(page, code_line, match["language"], match["code"], match["kind"], reason))
    return found


def pages_with_examples() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if p != SETUP_PAGE and "_build" not in p.parts and examples(p))


def test_command_line_examples_are_plain_commands_of_ours() -> None:
    for example in (e for page in DOCS.rglob("*.md") for e in examples(page)):
        if example.language == "bash" and example.kind != "skip":
            for line in example.code.splitlines():
                assert line.startswith(CLI) and not set("|>&;$`") & set(line), f"{example.page.name}: {line}"


def test_skipped_examples_are_rare_and_say_why() -> None:
    every = [e for page in DOCS.rglob("*.md") for e in examples(page)]
    assert {e.kind for e in every} <= {None, "skip", "setup"}, "a docs-test marker other than skip or setup"
    skipped = [e for e in every if e.kind == "skip"]
    assert len(skipped) <= MAX_SKIPPED, [f"{e.page.name}:{e.line}" for e in skipped]
    assert all(len(e.reason) >= 20 for e in skipped), "say why the example cannot run"
    assert [e.page for e in every if e.kind == "setup"] == [SETUP_PAGE]


def test_the_quickstart_and_every_guide_have_examples_that_run() -> None:
    pages = set(pages_with_examples())
    assert DOCS / "quickstart.md" in pages
    for guide in (DOCS / "guides").glob("*.md"):
        assert guide == SETUP_PAGE or guide in pages, f"{guide.name} has no Python example that runs"


@pytest.fixture(scope="module")
def guides_server() -> Iterator[None]:
    """The reader's setup: the local-setup page's block, run as written."""
    saved_conf = copy.deepcopy(fsspec.config.conf)
    namespace: dict[str, Any] = {"__name__": "docs_setup"}
    for example in examples(SETUP_PAGE):
        assert example.kind == "setup"
        example.run(namespace)
    yield
    namespace["server"].stop()
    fsspec.config.conf.clear()
    fsspec.config.conf.update(saved_conf)


@pytest.fixture
def isolated_page() -> Iterator[None]:
    """Undo what a page changes in the process: fsspec's configuration, registered strategies, log levels."""
    saved_conf = copy.deepcopy(fsspec.config.conf)
    saved_readers = dict(constructor._REGISTRY)
    dcp_logger = logging.getLogger("fsspec_s3reader.dcp")
    saved_level = dcp_logger.level
    yield
    fsspec.config.conf.clear()
    fsspec.config.conf.update(saved_conf)
    constructor._REGISTRY.clear()
    constructor._REGISTRY.update(saved_readers)
    dcp_logger.setLevel(saved_level)


@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_example_on_the_page_runs(page: Path, guides_server: None, isolated_page: None) -> None:
    # A module of its own, registered while it runs: dataclasses and pickling look their module up by name.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    sys.modules[module.__name__] = module
    try:
        for example in examples(page):
            if example.kind != "skip":
                example.run(module.__dict__)
    finally:
        del sys.modules[module.__name__]
