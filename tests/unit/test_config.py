"""Loading: defaults, presets, ${VAR} expansion, merging and field types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import load_config
from exporter.fields import parse_duration
from exporter.yamlsource import ConfigError, merge
from tests.support import REPO


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "botwatch.yml"
    path.write_text(text)
    return path


def test_no_file_uses_the_embedded_default_preset() -> None:
    loaded = load_config(None)
    assert loaded.origin == "preset default"
    host = loaded.config.collectors.host
    assert host.enabled
    assert host.interval == 15.0
    assert loaded.config.web.listen_address == ":9877"


def test_include_merges_presets_under_the_users_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "include: [trader-bot]\ncollectors:\n  host: {interval: 30s}\n")
    host = load_config(path).config.collectors.host
    assert host.interval == 30.0
    assert host.timeout == 10.0


@pytest.mark.parametrize(
    "preset", sorted(p.stem for p in (REPO / "exporter" / "presets").glob("*.yaml"))
)
def test_every_packaged_preset_is_a_valid_config(tmp_path: Path, preset: str) -> None:
    loaded = load_config(write(tmp_path, f"include: [{preset}]\n"))
    wanted = [n for n, c in loaded.config.collector_configs().items() if c.wanted()]
    assert "host" in wanted


def test_named_lists_merge_by_name() -> None:
    base = {"probes": [{"name": "a", "url": "x"}, {"name": "b", "url": "y"}]}
    over = {"probes": [{"name": "b", "url": "z"}, {"name": "c", "url": "w"}]}
    assert merge(base, over)["probes"] == [
        {"name": "a", "url": "x"},
        {"name": "b", "url": "z"},
        {"name": "c", "url": "w"},
    ]
    assert merge({"x": [1, 2]}, {"x": [3]}) == {"x": [3]}


def test_env_expansion_with_defaults_and_escapes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "state_dir: ${STATE_ROOT}/botwatch\n"
        "web: {listen_address: '${LISTEN:-127.0.0.1:9100}'}\n"
        "collectors:\n  host: {procfs: '/pro$$c'}\n",
    )
    loaded = load_config(path, {"STATE_ROOT": "/srv/state"})
    assert loaded.config.state_dir == Path("/srv/state/botwatch")
    assert loaded.config.web.listen_address == "127.0.0.1:9100"
    assert loaded.config.collectors.host.procfs == Path("/pro$c")
    assert loaded.secret_values == {"/srv/state"}


def test_several_unset_variables_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "state_dir: ${A_UNSET}\ncollectors:\n  host: {procfs: '${B_UNSET}'}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, {})
    assert [line.split(": ")[1] for line in err.value.lines] == [
        "state_dir",
        "collectors.host.procfs",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15.0), ("2m", 120.0), ("1h30m", 5400.0), ("250ms", 0.25), (3, 3.0), ("1d", 86400.0)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["fast", "15", "1s2", "s", "-5s", "", True])
def test_bad_durations(text: str | bool) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_validating_a_config_imports_no_collector_library_that_is_not_enabled() -> None:
    # Each of these costs megabytes of RSS; the default preset needs none of them.
    code = (
        "import sys\n"
        "from exporter.config import load_config\n"
        "load_config(None)\n"
        "heavy = {'docker', 'pysnmp', 'websockets', 'dbus_fast'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_readme_config_example_is_a_valid_config(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    reference = readme[readme.index("## Config reference") :]
    block = reference.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yml"
    path.write_text(block)
    loaded = load_config(path)
    assert {"app", "bot", "api"} <= {s.name for s in loaded.config.logs.sources}
