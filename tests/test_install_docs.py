"""The install lines a newcomer copies (README, docs/) install this project from a clone or a
built wheel, never a name on PyPI that belongs to someone else."""

from __future__ import annotations

import re
import tomllib

from tests.cli_helpers import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INSTALL = re.compile(r"\b(?:pip|pipx)\s+install\s+(?:-[-\w]+\s+)*(\S+)")
"""A pip or pipx install command and its first package argument."""
FOREIGN = {"p2pshare", "p2pshare-cli"}
"""Distribution names on PyPI that are not this project."""


def test_the_distribution_name_is_not_someone_elses() -> None:
    """pyproject.toml's distribution name is none of the unrelated projects on PyPI; the
    commands keep their names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] not in FOREIGN
    assert set(project["scripts"]) == {"p2pshare", "p2pshare-signal"}


def test_no_doc_installs_a_name_we_do_not_own() -> None:
    """Every `pip install`/`pipx install` of p2pshare in the docs installs `.` (a clone), a
    path or a wheel, never `p2pshare` or `p2pshare[extra]` from the registry."""
    bad = []
    for doc in DOCS:
        for match in INSTALL.finditer(doc.read_text()):
            target = match.group(1).strip("'\"`")
            name = re.split(r"[\[<>=!~;]", target)[0].lower()
            if name in FOREIGN:
                bad.append(f"{doc.name}: {match.group(0)}")
    assert not bad, bad


def test_the_readme_says_how_to_get_the_command_on_the_path() -> None:
    """The README's first install section puts `p2pshare` on the PATH (pipx, or activating
    the virtualenv) before the first bare `p2pshare` command."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Fresh machine") :]
    section = section[: section.index("\n## ", 3)]
    assert "pipx install ." in section
    assert ". .venv/bin/activate" in section
