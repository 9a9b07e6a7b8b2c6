"""The README's Configuration table and `Settings` agree: every setting has its row."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from runner.settings import Settings

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| `(?P<env>[A-Z_]+)` \| (?P<flag>[^|]+) \|", re.MULTILINE)


def configuration_rows() -> dict[str, str]:
    """The variable → flag column of the table under "## Configuration"."""
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return {m["env"]: m["flag"].strip() for m in ROW.finditer(section)}


def test_every_setting_has_a_configuration_row_with_its_flag():
    rows = configuration_rows()
    for field in dataclasses.fields(Settings):
        meta = field.metadata
        if "env" not in meta:
            continue
        assert meta["env"] in rows, f"README Configuration: no row for {meta['env']}"
        shown = rows[meta["env"]]
        if meta["flag"]:
            assert shown.startswith(f"`{meta['flag']}"), (meta["env"], shown)
        else:
            assert shown == "(environment only)", (meta["env"], shown)


def test_the_table_names_no_setting_that_does_not_exist():
    assert set(configuration_rows()) == set(Settings.env_vars().values())
