"""Storage options: how s3 access is configured (requester-pays, endpoint, anonymous) for fsspec."""

from __future__ import annotations

import pytest

from stac_clouds2mask.storage import StorageOptions, join


def test_requester_pays_and_endpoint_reach_s3fs(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    opts = StorageOptions(anon=False, requester_pays=True, endpoint_url="https://eodata.example.org")
    assert opts.fsspec_kwargs("s3://sentinel-s2-l1c/tiles/B02.jp2") == {
        "anon": False, "requester_pays": True, "client_kwargs": {"endpoint_url": "https://eodata.example.org"},
        "config_kwargs": {"retries": {"max_attempts": 6, "mode": "standard"}}}
    assert opts.fsspec_kwargs("/local/file.tif") == {}


@pytest.mark.parametrize("env, expected", [({"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}, False), ({}, True)])
def test_anonymous_only_without_credentials(monkeypatch, tmp_path, env, expected):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert StorageOptions().fsspec_kwargs("s3://bucket/key")["anon"] is expected


def test_join_keeps_url_schemes():
    assert join("s3://bucket/prefix/", "a", "/b.json") == "s3://bucket/prefix/a/b.json"
