"""The `collectors.files` section: one line per problem, and off unless it has paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli import main
from exporter.collectors.files import FilesConfig
from exporter.config import Config

F = "collectors.files"
# (name, the files section, the exact expected stderr lines with {f} for the file path)
CASES: list[tuple[str, str, list[str]]] = [
    (
        "unquoted-mode",
        "paths: [{path: /opt/alphaengine, checks: {mode: 0750}}]",
        [
            f'{{f}}: {F}.paths[0].checks.mode: must be quoted, like "0750" '
            "(an unquoted mode is read as a number) (got 488)"
        ],
    ),
    (
        "bad-mode",
        "paths: [{path: /a, checks: {mode: '0980'}}, {path: /b, checks: {mode: '07'}}]",
        [
            f'{{f}}: {F}.paths[0].checks.mode: must be 3 or 4 octal digits, like "0750" '
            "(got '0980')",
            f'{{f}}: {F}.paths[1].checks.mode: must be 3 or 4 octal digits, like "0750" '
            "(got '07')",
        ],
    ),
    (
        "relative-path",
        "paths: [{path: opt/alphaengine}]",
        [f"{{f}}: {F}.paths[0].path: must be an absolute path (got 'opt/alphaengine')"],
    ),
    (
        "missing-path",
        "paths: [{name: x, checks: {yaml: true}}]",
        [f"{{f}}: {F}.paths[0].path: required key is missing"],
    ),
    (
        "check-typo",
        "paths: [{path: /a, checks: {yml: true}}]",
        [f"{{f}}: {F}.paths[0].checks.yml: unknown key (did you mean 'yaml'?)"],
    ),
    (
        "type",
        "paths: [{path: /a, checks: {type: dir}}]",
        [
            f"{{f}}: {F}.paths[0].checks.type: must be one of 'file', 'directory', 'symlink' "
            "or 'other' (got 'dir')"
        ],
    ),
    (
        "owner",
        "paths: [{path: /a, checks: {owner: '', group: true}}]",
        [
            f"{{f}}: {F}.paths[0].checks.owner: must be a name or a numeric id (got '')",
            f"{{f}}: {F}.paths[0].checks.group: must be a name or a numeric id (got True)",
        ],
    ),
    (
        "max-age",
        "paths: [{path: /a, checks: {max_age: soon}}]",
        [
            f"{{f}}: {F}.paths[0].checks.max_age: not a duration (use e.g. 15s, 2m, 1h30m) "
            "(got 'soon')"
        ],
    ),
    (
        "duplicate-path",
        "paths: [{path: /a}, {path: /b}, {path: /a}]",
        [
            f"{{f}}: {F}.paths[2].path: path label '/a' is used twice (give one of them a "
            "name) (got '/a')"
        ],
    ),
    (
        "duplicate-name",
        "paths: [{path: /a, name: x}, {path: /b, name: x}]",
        [
            f"{{f}}: {F}.paths[1].name: path label 'x' is used twice (give one of them a "
            "name) (got 'x')"
        ],
    ),
    (
        "name",
        "paths: [{path: /a, name: 'my file'}]",
        [f"{{f}}: {F}.paths[0].name: must match [A-Za-z0-9][A-Za-z0-9_.:-]* (got 'my file')"],
    ),
    (
        "backups",
        "backups: [{name: a, glob: 'backups/*.tar.gz'}, {name: a, glob: '/b/**/*.tar.gz'},"
        " {glob: /c}]",
        [
            f"{{f}}: {F}.backups[0].glob: must be an absolute path or glob "
            "(got 'backups/*.tar.gz')",
            f"{{f}}: {F}.backups[1].glob: '**' is not supported (wildcards match within one "
            "directory) (got '/b/**/*.tar.gz')",
            f"{{f}}: {F}.backups[2].name: required key is missing",
        ],
    ),
    (
        "duplicate-set",
        "backups: [{name: a, glob: /a/*}, {name: a, glob: /b/*}]",
        [f"{{f}}: {F}.backups[1].name: backup set name 'a' is used twice (got 'a')"],
    ),
    (
        "stat-timeout",
        "timeout: 2s\n    stat_timeout: 2s\n    paths: [{path: /a}]",
        [f"{{f}}: {F}.stat_timeout: must be shorter than the collector timeout (2s) (got '2s')"],
    ),
    (
        "limits",
        "rootfs: host\n    max_yaml_bytes: 0",
        [
            f"{{f}}: {F}.rootfs: must be an absolute path (got 'host')",
            f"{{f}}: {F}.max_yaml_bytes: must be at least 1 (got 0)",
        ],
    ),
]


@pytest.mark.parametrize(("name", "section", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_files_config_one_line_per_problem(
    name: str,
    section: str,
    expected: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / f"{name}.yml"
    path.write_text(f"collectors:\n  files:\n    {section}\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert sorted(err.splitlines()) == sorted(line.replace("{f}", str(path)) for line in expected)
    assert "Traceback" not in err


def test_off_unless_it_has_something_to_look_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not Config().collector_configs()["files"].wanted()
    assert not FilesConfig(enabled=True).wanted()
    assert FilesConfig(backups=[{"name": "a", "glob": "/b/*.tar.gz"}]).wanted()
    assert not FilesConfig(enabled=False, paths=[{"path": "/a"}]).wanted()
    path = tmp_path / "files.yml"
    path.write_text("collectors:\n  files:\n    paths: [{path: /opt/alphaengine}]\n")
    assert main(["check-config", str(path)]) == 0
    assert "files" in capsys.readouterr().out.split("collectors: ")[1].rstrip(")\n").split(", ")


def test_values_are_normalised() -> None:
    config = FilesConfig.model_validate(
        {
            "timeout": "4s",
            "paths": [
                {"path": "/a", "checks": {"mode": "750", "owner": 1001, "group": "bots"}},
                {"path": "/b", "name": "b", "checks": {"executable": False, "yaml": True}},
            ],
        }
    )
    assert config.stat_timeout == 2.0  # half a short timeout, as the host collector's
    first, second = config.paths
    assert (first.checks.mode, first.checks.owner, first.label) == ("0750", "1001", "/a")
    assert first.checks.configured() == ["mode", "owner", "group"]
    assert second.checks.configured() == ["yaml"]
    assert second.label == "b"
    assert FilesConfig().stat_timeout == 5.0
