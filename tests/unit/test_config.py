from pathlib import Path

import pytest

from ivr.config import ConfigError, load_config

PROJECT = Path(__file__).resolve().parents[2]
PROMPTS = PROJECT / "prompts" / "prompts.yaml"
JOURNEY = PROJECT / "dialplan"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivr.toml"
    path.write_text(f'[prompts]\ntexts = "{PROMPTS}"\n[journey]\ndir = "{JOURNEY}"\n' + text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_example_config_loads():
    config = load_config(Path(__file__).resolve().parents[2] / "ivr.example.toml")
    assert config.desk.default
    assert config.agi.bind == "127.0.0.1"


def test_defaults_are_loopback_and_valid(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.asterisk.sip_bind == "127.0.0.1"
    assert config.data_dir == (tmp_path / "var").resolve()


def test_unknown_key_names_line_and_key(tmp_path):
    path = write(tmp_path, "[asterisk]\nsip_port = 5060\nsip_prot = 5061\n")
    (problem,) = problems(path)
    assert problem == "line 7: asterisk.sip_prot: unknown key"


def test_bad_port_names_line_key_and_problem(tmp_path):
    path = write(tmp_path, "\n[agi]\nport = 70000\n")
    (problem,) = problems(path)
    assert problem.startswith("line 7: agi.port:")
    assert "65535" in problem


def test_agi_must_stay_on_loopback(tmp_path):
    (problem,) = problems(write(tmp_path, '[agi]\nbind = "0.0.0.0"\n'))
    assert "agi.bind" in problem and "loopback" in problem


def test_port_clash_is_reported(tmp_path):
    (problem,) = problems(write(tmp_path, "[agi]\nport = 5038\n"))
    assert "asterisk.ami_port" in problem and "agi.port" in problem


def test_missing_prompt_names_the_prompt(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text(f'[journey]\ndir = "{JOURNEY}"\n[prompts]\ntexts = "{PROMPTS}"\n'
                    'notice = "no_such_prompt"\n')
    (problem,) = problems(path)
    assert problem.startswith("line 5: prompts.notice:")
    assert "no_such_prompt" in problem


def test_missing_prompt_file(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text(f'[journey]\ndir = "{JOURNEY}"\n[prompts]\ntexts = "nowhere.yaml"\n')
    (problem,) = problems(path)
    assert "prompts.texts" in problem and "does not exist" in problem


def test_missing_journey_folder(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text(f'[prompts]\ntexts = "{PROMPTS}"\n[journey]\ndir = "nowhere"\n')
    (problem,) = problems(path)
    assert problem.startswith("line 4: journey.dir:") and "does not exist" in problem


def test_not_toml(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text("this is = = not toml")
    (problem,) = problems(path)
    assert "not valid TOML" in problem


def test_run_refuses_bad_config_with_file_key_and_problem(tmp_path):
    from click.testing import CliRunner

    from ivr.cli import main

    path = write(tmp_path, "[web]\nport = 0\n[asterisk]\nsip_prot = 5061\n")
    result = CliRunner().invoke(main, ["run", "-c", str(path)])
    assert result.exit_code == 2
    assert f"{path}: line 6: web.port: Input should be greater than or equal to 1" in result.output
    assert f"{path}: line 8: asterisk.sip_prot: unknown key" in result.output
