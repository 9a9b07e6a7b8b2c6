"""Which files are pipelines: every *.py, except what the README says is skipped."""

from runner import discovery


def test_private_and_hidden_files_and_folders_are_skipped(tmp_path):
    for name in (
        "add.py",
        "team/train.py",
        "_common.py",
        "__init__.py",
        ".add.py",
        ".#add.py",
        "team/.scratch.py",
        ".hidden/pipe.py",
        "_private/pipe.py",
        "__pycache__/add.py",
    ):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    found = [p.relative_to(tmp_path).as_posix() for p in discovery.discover(tmp_path)]
    assert found == ["add.py", "team/train.py"]
