"""The one URL allow-list (actions_server/urls.py): URLs compared as URLs, never as strings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from actions_server.urls import AllowList, UrlRefused, normalise_url, url_allowed
from conftest import make_settings

PREFIX = "http://h/git/platform-team/"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://h/git/platform-team/x.git", True),
        ("http://h/git/platform-team", True),
        ("HTTP://H/git/platform-team/x.git", True),
        ("http://h:80/git/platform-team/x.git", True),
        ("http://h./git/platform-team/x.git", True),
        ("http://h/git/%70latform-team/x.git", True),
        ("http://h/git/platform-team/./x.git", True),
        ("http://h/git/platform-team/sub/../x.git", True),
        # Whole segments only: a longer name is another owner.
        ("http://h/git/platform-team-evil/x.git", False),
        ("http://h/git/platform-teamx.git", False),
        # `..` is resolved before comparing, however it is spelt.
        ("http://h/git/platform-team/../team-b/x.git", False),
        ("http://h/git/platform-team/%2e%2e/team-b/x.git", False),
        ("http://h/git/platform-team/%2E%2E/team-b/x.git", False),
        ("http://h/git/platform-team/.%2e/team-b/x.git", False),
        # Another origin: scheme, host or port.
        ("https://h/git/platform-team/x.git", False),
        ("http://h:8080/git/platform-team/x.git", False),
        ("http://h.evil/git/platform-team/x.git", False),
        ("http://evil/git/platform-team/x.git", False),
        # Malformed or ambiguous: never allowed.
        ("http://h@evil/git/platform-team/x.git", False),
        ("http://user:pw@h/git/platform-team/x.git", False),
        ("http://h/git/platform-team%2F..%2Fteam-b/x.git", False),
        ("http://h/git/platform-team/%5C..%5Cteam-b/x.git", False),
        ("http://h/git/platform-team\\..\\team-b/x.git", False),
        ("http://h/git/platform-team/x.git%00", False),
        ("http://h/git/platform-team/%252e%252e/team-b/x.git", False),
        ("http://h/git/platform-team//../team-b/x.git", False),
        ("http://h/git/platform-team/a..b/x.git", False),
        ("http://h/git/platform-team/x.git?/../../team-b", False),
        ("http://h/git/platform-team/x.git#frag", False),
        ("http://h/git/platform-team/x.git\n", False),
        ("git@h:git/platform-team/x.git", False),
        ("ext::sh -c touch% /tmp/pwned", False),
        ("/git/platform-team/x.git", False),
    ],
)
def test_url_allowed_compares_by_segment_after_normalising(url: str, allowed: bool) -> None:
    assert url_allowed(url, [PREFIX]) is allowed


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("HTTP://Example.COM:80/a/./b/../c.git", "http://example.com/a/c.git"),
        ("https://example.com:443/%7Euser/%61%62%2b", "https://example.com/~user/ab%2B"),
        ("https://example.com:8443/a/", "https://example.com:8443/a/"),
        ("https://example.com", "https://example.com/"),
        ("http://[::1]:8787/git/x.git", "http://[::1]:8787/git/x.git"),
        ("ssh://git@example.com:22/org/repo.git", "ssh://git@example.com/org/repo.git"),
        ("file://localhost/srv/repos/x.git", "file:///srv/repos/x.git"),
        ("file:///srv/repos/", "file:///srv/repos/"),
        ("http://h/a%7Cb{c}", "http://h/a%7Cb%7Bc%7D"),
    ],
)
def test_normal_form(url: str, normalised: str) -> None:
    assert str(normalise_url(url)) == normalised


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("git@github.com:org/repo.git", "scp-style"),
        ("ext::sh", "scp-style"),
        ("fd::3", "scp-style"),
        ("gopher://h/x", "scheme"),
        ("http://h/../x", "above the root"),
        ("file:///srv/repos/../etc", "'.' or '..'"),
        ("file:///srv/repos/./x", "'.' or '..'"),
        ("file://elsewhere/srv/x", "this machine"),
        ("http://h/a%2Fb", "escaped '/'"),
        ("http://h/a%zz", "malformed percent-escape"),
        ("http://h:99999/x", "port"),
        ("http://h_/x?q", "query"),
        ("http:///x", "host"),
        ("ssh://git:secret@h/x", "no password"),
        ("http://h/é", "percent-encode"),
    ],
)
def test_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        normalise_url(url)


def test_a_query_is_kept_only_where_asked_for() -> None:
    url = "https://gitlab.com/g/p/-/raw/main/catalog-info.yaml?ref_type=heads"
    assert normalise_url(url, query=True).query == "ref_type=heads"
    with pytest.raises(UrlRefused):
        normalise_url(url)


def test_match_returns_the_url_to_fetch() -> None:
    sources = AllowList([PREFIX, "file:///srv/templates"])
    assert str(sources.match("http://H/git/platform-team/sub/../x.git")) == "http://h/git/platform-team/x.git"
    assert str(sources.match("file:///srv/templates/t.git")) == "file:///srv/templates/t.git"
    assert sources.match("file:///srv/templates-old/t.git") is None


def test_a_prefix_that_cannot_be_compared_is_a_configuration_error() -> None:
    with pytest.raises(UrlRefused, match="allow-list prefix 'git@h:org/'"):
        AllowList(["git@h:org/"])


def test_the_server_refuses_to_start_with_such_a_prefix(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="scp-style"):
        make_settings(tmp_path, template_sources="http://h/git/platform-team/,git@h:org/")
