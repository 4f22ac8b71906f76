"""Fixtures of the portal tests (imported by name: a second conftest.py would shadow tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from portal_replay import PORTAL_SETTINGS

from actions_server.config import Settings
from actions_server.services import Services
from conftest import admin_client, make_settings


@pytest.fixture
def portal_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, **PORTAL_SETTINGS)


@pytest.fixture
def portal_client(portal_settings: Settings) -> Iterator[TestClient]:
    with admin_client(portal_settings) as client:
        yield client


@pytest.fixture
def side_services(portal_settings: Settings) -> Iterator[Services]:
    """A second Services on the same database: what another part of the platform would hold."""
    services = Services.create(portal_settings.model_copy())
    yield services
    services.close()
