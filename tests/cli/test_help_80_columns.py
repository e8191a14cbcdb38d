"""At 80 columns, `--help` of every command keeps every option name whole (typer's rich help used to cut
`--no-detector-score` to `--no-detector-sc…`)."""

import pytest
from compat_cli.main import main
from compat_core.plugins import get_host

COMMANDS = ([["train", entry.name] for entry in get_host().methods]
            + [["eval", entry.name] for entry in get_host().evaluators]
            + [["features", "extract"], ["features", "info"], ["data", "split"], ["study", "run"],
               ["study", "report"], ["runs", "show"], ["plugins", "list"], ["index", "build"],
               ["index", "search"], ["index", "info"]])


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_help_never_cuts_a_name(argv, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERM", "dumb")
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    output = capsys.readouterr().out
    assert done.value.code == 0
    assert "…" not in output, next(line for line in output.splitlines() if "…" in line)
    assert max(len(line) for line in output.splitlines()) <= 80
