"""Settings: sections built from flat names and the environment, one comma-separated type, frozen, `replace`,
and every secret known to the redactor."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from actions_server.config import SECTION_OF, SECTIONS, CommaSeparated, Section, Settings
from actions_server.redact import Redactor
from actions_server.services import Services
from conftest import make_settings


def test_flat_names_go_to_their_section(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, forge="github", api_token="a-token-0123", port=9000, sandbox="off")
    assert settings.storage.data_dir == tmp_path
    assert settings.forges.forge == "github"
    assert settings.server.api_token is not None
    assert settings.server.api_token.get_secret_value() == "a-token-0123"
    assert settings.server.port == 9000
    assert settings.isolation.sandbox == "off"
    assert settings.server.host == "127.0.0.1"  # not given: the default


def test_unknown_flat_names_are_ignored_like_other_variables(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path, no_such_setting=1).storage.data_dir == tmp_path


def test_flat_names_are_validated_in_their_section(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="port"):
        Settings(data_dir=tmp_path, port=70000)


def test_the_environment_fills_each_section(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLTF_PORT", "9123")
    monkeypatch.setenv("PLTF_GITHUB_TOKEN", "gh-token-0123")
    monkeypatch.setenv("PLTF_PREVIEW_MAX_ACTIVE", "3")
    monkeypatch.setenv("PLTF_LOG_LEVEL", "debug")
    monkeypatch.setenv("PLTF_HOST", "")  # empty means unset
    settings = Settings(data_dir=tmp_path, port=9999)
    assert settings.server.port == 9999  # what the code gives wins over the environment
    assert settings.forges.github_token == SecretStr("gh-token-0123")
    assert settings.previews.preview_max_active == 3
    assert settings.server.log_level == "debug"
    assert "log_level" in settings.server.model_fields_set
    assert settings.server.host == "127.0.0.1"
    monkeypatch.delenv("PLTF_PORT")
    assert Settings(data_dir=tmp_path).server.port == 8787


def test_relative_paths_are_made_absolute_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # cookiecutter changes the working directory while rendering; a kept path must not move with it.
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir="data", workspace_dir="workspaces", templates_dir="templates")
    assert settings.storage.data_dir == tmp_path / "data"
    assert settings.storage.workspace_dir == tmp_path / "workspaces"
    assert settings.templates.templates_dir == tmp_path / "templates"
    assert Settings().storage.data_dir == tmp_path / ".pltf"  # the default too
    assert settings.storage.resolved_database_url == f"sqlite:///{tmp_path / 'data' / 'pltf.db'}"


def test_one_comma_separated_type_in_code_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLTF_PREVIEW_PR_LABELS", " preview, ,ready ,")
    monkeypatch.setenv("PLTF_CATALOG_FILE_ROOTS", f"{tmp_path}/a,{tmp_path}/b")
    monkeypatch.setenv("PLTF_FORGE_HOSTS", "Git.Example.com=gitlab, code.example.org = gitea")
    settings = Settings(data_dir=tmp_path, backstage_actions="service:*,template:*", template_sources=["https://a/"])
    assert settings.previews.preview_pr_labels == ("preview", "ready")
    assert settings.catalog.catalog_file_roots == (tmp_path / "a", tmp_path / "b")
    assert settings.forges.forge_hosts == {"git.example.com": "gitlab", "code.example.org": "gitea"}
    assert settings.catalog.backstage_actions == ("service:*", "template:*")
    assert settings.templates.template_sources == ("https://a/",)
    # Every list setting is that one type, so a new one splits the same way.
    list_settings = [
        name
        for section in SECTIONS.values()
        for name, field in section.model_fields.items()
        if "tuple" in str(field.annotation) or "list" in str(field.annotation)
    ]
    assert len(list_settings) == 7
    for name in list_settings:
        section = SECTIONS[SECTION_OF[name]]
        assert section.model_fields[name].metadata == list(CommaSeparated.__metadata__), name  # type: ignore[attr-defined]


def test_a_prefix_that_cannot_be_compared_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, preview_sources="not a url")


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(ValidationError, match="frozen"):
        settings.server.port = 9000  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.server = settings.server  # type: ignore[misc]


def test_replace_gives_a_changed_frozen_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, log_level="warning")
    monkeypatch.setenv("PLTF_GITHUB_URL", "https://ghe.example.com/api/v3")  # read at construction, not on replace
    wildcard = "0.0.0.0"  # noqa: S104
    changed = settings.replace(host=wildcard, port=9000, gitops_url="/srv/gitops.git")
    assert (changed.server.host, changed.server.port, changed.gitops.gitops_url) == (wildcard, 9000, "/srv/gitops.git")
    assert changed.server.base_url == "http://127.0.0.1:9000"
    assert (settings.server.host, settings.server.port, settings.gitops.gitops_url) == ("127.0.0.1", 8787, None)
    assert changed.forges is settings.forges  # untouched sections are shared, not re-read
    assert changed.forges.github_url == "https://api.github.com"
    assert changed.server.model_fields_set >= {"log_level", "host", "port"}  # what was set stays set
    assert changed.server.api_token == settings.server.api_token
    with pytest.raises(ValidationError, match="frozen"):
        changed.server.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.replace(port=0)
    with pytest.raises(TypeError, match="no_such_setting"):
        settings.replace(no_such_setting=1)


def test_flat_names_are_unique_across_sections() -> None:
    names = [name for section in SECTIONS.values() for name in section.model_fields]
    assert len(names) == len(set(names)) == len(SECTION_OF)
    assert not set(SECTION_OF) & set(SECTIONS)


def _secret_fields() -> list[str]:
    def is_secret(annotation: object) -> bool:
        return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())

    return [
        name for section in SECTIONS.values() for name, f in section.model_fields.items() if is_secret(f.annotation)
    ]


def test_every_secret_setting_is_registered_with_the_redactor_at_start_up(tmp_path: Path) -> None:
    secrets = _secret_fields()
    assert {"api_token", "github_token", "gitops_token", "backstage_token", "github_webhook_secret"} <= set(secrets)
    # Values that stay valid for each setting (the preview admin database is a URL).
    values = {name: f"postgresql://admin:pw-{name}@db.example/postgres" for name in secrets}
    settings = make_settings(tmp_path, **values)
    redactor = Redactor()
    Services.create(settings, redactor).close()
    for name, value in values.items():
        assert redactor(f"leaked {value}") == "leaked ***", name


def test_sections_are_settings_read_from_pltf_variables() -> None:
    for name, section in SECTIONS.items():
        assert issubclass(section, Section), name
        assert section.model_config["env_prefix"] == "PLTF_"
        assert section.model_config["frozen"] is True
        assert issubclass(Settings, BaseModel)
