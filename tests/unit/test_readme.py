"""The README stays true: its configuration table lists exactly the settings Keyfob reads."""

import re
from pathlib import Path

from app.config import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_configuration_table_lists_every_setting_with_its_default():
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", README.read_text(), flags=re.MULTILINE))
    assert set(rows) == {setting.name for setting in SETTINGS}
    for setting in SETTINGS:
        expected = f"`{setting.default}`" if setting.default is not None else "—"
        assert rows[setting.name].strip() == expected, setting.name


def test_quick_start_is_the_two_commands_first():
    text = README.read_text()
    quick_start = text[text.index("## Quick start"):]
    commands = re.findall(r"^make \w+", quick_start, flags=re.MULTILINE)
    assert commands[:2] == ["make run", "make test"]
