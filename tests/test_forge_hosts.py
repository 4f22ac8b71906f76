"""forges/hosts.py: which provider a host means, and which hosts may see a provider's token."""

from __future__ import annotations

from pathlib import Path

from actions_server.forges.hosts import git_credentials, provider_for_host
from conftest import make_settings


def test_a_token_goes_only_to_the_hosts_of_its_configured_url(tmp_path: Path) -> None:
    enterprise = make_settings(tmp_path, github_url="https://ghe.corp.example/api/v3", github_token="ghe-secret")
    assert git_credentials(enterprise, "https://ghe.corp.example/acme/users-api.git") == (
        "x-access-token",
        "ghe-secret",
    )
    # github.com still means GitHub to repo:create, but it is not where this token belongs.
    assert provider_for_host(enterprise, "github.com") == "github"
    assert git_credentials(enterprise, "https://github.com/acme/users-api.git") is None
    assert git_credentials(enterprise, "ssh://ghe.corp.example/acme/users-api.git") is None


def test_configured_hosts_win_over_well_known_ones(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, forge_hosts="github.com=gitea,git.example.com:3000=gitlab")
    assert provider_for_host(settings, "GitHub.com") == "gitea"
    assert provider_for_host(settings, "git.example.com:3000") == "gitlab"
    assert provider_for_host(settings, "gitlab.com") == "gitlab"
    assert provider_for_host(settings, "unknown.example.com") is None
