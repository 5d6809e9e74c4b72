"""The `collectors.process` section: off without processes, one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.collectors.process import ProcessConfig
from exporter.config import Config, load_config
from exporter.yamlsource import ConfigError


def errors(tmp_path: Path, section: str) -> list[str]:
    path = tmp_path / "botwatch.yml"
    path.write_text("collectors:\n  process:\n" + section)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [line.removeprefix(f"{path}: ") for line in caught.value.lines]


def test_off_by_default_and_without_processes() -> None:
    assert not Config().collector_configs()["process"].wanted()
    assert not ProcessConfig(processes=[]).wanted()
    one = {"processes": [{"name": "trader-api", "match_name": "^trader-api$"}]}
    assert ProcessConfig.model_validate(one).wanted()
    assert not ProcessConfig.model_validate({**one, "enabled": False}).wanted()


def test_a_valid_section(tmp_path: Path) -> None:
    path = tmp_path / "botwatch.yml"
    path.write_text(
        "collectors:\n"
        "  process:\n"
        "    interval: 5s\n"
        "    procfs: /host/proc\n"
        "    max_ports: 4\n"
        "    processes:\n"
        "      - {name: trader-api, match_name: '^trader-api$'}\n"
        "      - {name: alphaengine-bot, match_cmdline: 'python[0-9.]* -m bot( |$)'}\n"
    )
    config = load_config(path).config.collector_configs()["process"]
    assert isinstance(config, ProcessConfig)
    assert (config.interval, config.timeout, config.max_ports) == (5.0, 5.0, 4)
    assert config.procfs == Path("/host/proc")
    bot = config.processes[1]
    assert bot.match_name is None
    assert bot.match_cmdline is not None and bot.match_cmdline.search("python3.11 -m bot")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "    processes: [{name: bot}]\n",
            "collectors.process.processes[0]: needs match_name, match_cmdline or both"
            " (both must match) (got a mapping)",
        ),
        (
            "    processes: [{name: bot, match_cmdline: '(python'}]\n",
            "collectors.process.processes[0].match_cmdline: invalid regex: missing ),"
            " unterminated subpattern at position 0 (got '(python')",
        ),
        (
            "    processes:\n"
            "      - {name: bot, match_name: a}\n"
            "      - {name: web, match_name: b}\n"
            "      - {name: bot, match_name: c}\n",
            "collectors.process.processes[2].name: process name 'bot' is used twice (got 'bot')",
        ),
        (
            "    processes: [{name: ' ', match_name: a}]\n",
            "collectors.process.processes[0].name: must not be empty (got ' ')",
        ),
        (
            "    processes: [{name: bot, match_comdline: a}]\n",
            "collectors.process.processes[0].match_comdline: unknown key"
            " (did you mean 'match_cmdline'?)",
        ),
        (
            "    max_ports: 0\n",
            "collectors.process.max_ports: must be at least 1 (got 0)",
        ),
    ],
)
def test_one_line_per_problem(tmp_path: Path, section: str, expected: str) -> None:
    assert errors(tmp_path, section) == [expected]
