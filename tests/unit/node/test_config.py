"""Config precedence and validation: defaults < TOML < QNODE_* environment < flags, and every
problem reported at once. Method: call `load_config` with explicit environ dicts and temp files."""

import pytest

from qnode.config import ConfigError, NodeConfig, load_config, parse_address


def test_defaults_are_the_single_node_embedded_setup():
    config = load_config({}, environ={})
    assert config.roles == ("frontend", "metadata", "backend")
    assert config.listen == "127.0.0.1:7700"
    assert config.http == "127.0.0.1:9324"
    assert config.data_dir == "./qnode-data"


def test_precedence_file_then_environment_then_flags(tmp_path):
    toml = tmp_path / "q.toml"
    toml.write_text('node_id = "from-file"\ndata_dir = "/d/file"\nlisten = "127.0.0.1:1"\n'
                    'roles = ["backend"]\n')
    env = {"QNODE_DATA_DIR": "/d/env", "QNODE_LISTEN": "127.0.0.1:2"}
    config = load_config({"listen": "127.0.0.1:3", "node_id": None}, config_file=str(toml),
                         environ=env)
    assert config.node_id == "from-file"      # only the file set it
    assert config.data_dir == "/d/env"        # environment beats the file
    assert config.listen == "127.0.0.1:3"     # flags beat everything
    assert config.roles == ("backend",)


def test_environment_lists_are_comma_separated():
    config = load_config({}, environ={"QNODE_SEEDS": "127.0.0.1:1, 127.0.0.1:2",
                                      "QNODE_ROLES": "metadata"})
    assert config.seeds == ("127.0.0.1:1", "127.0.0.1:2")
    assert config.roles == ("metadata",)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load_config({"roles": "frontend,bogus", "listen": "nope", "account_id": "12"}, environ={})
    text = " | ".join(info.value.problems)
    assert "bogus" in text
    assert "--listen" in text
    assert "--account-id" in text
    assert len(info.value.problems) == 3


def test_unknown_setting_in_file_is_rejected(tmp_path):
    toml = tmp_path / "q.toml"
    toml.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_config({}, config_file=str(toml), environ={})


def test_http_off_is_valid_and_addresses_parse():
    assert NodeConfig(http="off").validate() == []
    assert parse_address("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError):
        parse_address("127.0.0.1:99999")
