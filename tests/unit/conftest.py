"""Fixtures shared by the unit tests: the example associations, planned as in the lab."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from assotic.artifacts import resolve_releases
from assotic.preflight import Platform
from assotic.tenants import load_tenants

REPO = Path(__file__).resolve().parents[2]

# Unit tests describe the default lab: a developer's exported lab slot must not change them
# (lab.harness reads it when first imported; test_lab_unit checks slots in a subprocess).
os.environ.pop("ASSOTIC_LAB_SLOT", None)
# Nor must a run's release override or artifacts folder (a real Paheko given to the lab):
# the unit tests plan the committed pins.
os.environ.pop("ASSOTIC_RELEASES_OVERRIDE", None)
os.environ.pop("ARTIFACTS_DIR", None)


@pytest.fixture
def example_tenants():
    loaded, problems = load_tenants(REPO / "group_data" / "tenants")
    assert problems == []
    return [tenant for _, tenant in loaded]


@pytest.fixture
def lab_host_data(example_tenants, tmp_path):
    """Host data as group_data gives it in the lab: no release available, stand-in policy."""
    pins = {"nextcloud": {"12": {"version": "34.0.4", "url": "https://example.invalid/nc.tar.bz2",
                                 "sha256": "0" * 64}},
            "paheko": {"version": "1.3.12", "url": "https://example.invalid/p.tar.gz",
                       "sha256": "1" * 64},
            "mattermost": {"version": "11.1.1", "url": "https://example.invalid/m.tar.gz",
                           "sha256": "2" * 64}}
    release_set = resolve_releases(example_tenants, pins, {"web-1": "12", "web-2": "12"},
                                   cache_dir=tmp_path, allow_download=False, quiet=True)
    return SimpleNamespace(platform=Platform(tenants=example_tenants, secrets=None),
                           release_set=release_set, missing_release="standin")
