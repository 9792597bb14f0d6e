"""The set-up the README promises is the set-up CI runs, and the README points at pages that exist."""

from __future__ import annotations

import re
from pathlib import Path

import fsspec_s3reader

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    test_command = next(c for c in _readme_commands() if "pytest" in c)
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_both_readme_commands_install_the_cpu_torch_wheel_first() -> None:
    commands = _readme_commands()
    assert len(commands) >= 2
    for command in commands[:2]:
        assert command.startswith("pip install torch==2.13.0 && ")


def test_the_package_is_typed() -> None:
    assert (Path(fsspec_s3reader.__file__).parent / "py.typed").exists()


def test_ci_builds_the_documentation_with_warnings_as_errors() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.startswith("sphinx-build -W ") and " docs " in line for line in ci_lines)
    test_command = next(c for c in _readme_commands() if "pytest" in c)
    assert re.search(r'\.\[[^]]*\bdocs\b[^]]*\]"', test_command), "CI builds the docs: the test command installs them"


def test_every_relative_link_in_the_readme_names_a_file() -> None:
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", (ROOT / "README.md").read_text())
    assert links
    for link in links:
        assert (ROOT / link).exists(), link
