"""Credentials never reach a record, a report or a message: stemscale.redact."""

from __future__ import annotations

import argparse

import pytest

from stemscale.cli.errors import one_line
from stemscale.cli.storage import storage_options
from stemscale.errors import InputError, MosaicNotFoundError
from stemscale.metadata import provenance
from stemscale.redact import MASK, is_sensitive_key, redact, redact_text


@pytest.mark.parametrize("name", ["key", "secret", "token", "password", "credentials",
                                  "aws_access_key_id", "aws_secret_access_key", "session_token",
                                  "api_key", "Authorization", "input.storage_options.secret",
                                  "sas_key", "X-Amz-Signature"])
def test_credential_names(name):
    assert is_sensitive_key(name)


@pytest.mark.parametrize("name", ["endpoint_url", "anon", "config_sha256", "sigma_x_px",
                                  "monkey", "keys_total", "region_name", "profile", "block"])
def test_ordinary_names(name):
    assert not is_sensitive_key(name)


def test_nested_options_are_redacted_and_the_input_is_untouched():
    options = {"endpoint_url": "http://minio:9000", "key": "AKIA1", "secret": "S3CR3T",
               "anon": False, "client_kwargs": {"aws_session_token": "TOK", "region_name": "x"},
               "list": [{"password": "pw"}], "token": None}
    clean = redact({"input": {"storage_options": options}})["input"]["storage_options"]
    assert clean == {"endpoint_url": "http://minio:9000", "key": MASK, "secret": MASK,
                     "anon": False, "client_kwargs": {"aws_session_token": MASK,
                                                      "region_name": "x"},
                     "list": [{"password": MASK}], "token": None}
    assert options["secret"] == "S3CR3T"


@pytest.mark.parametrize("text, secret", [
    ("s3://AKIA123:S3CR3T@bucket/m.zarr", "S3CR3T"),
    ("https://user:pa55@host:9000/m.zarr", "pa55"),
    ("input.storage_options.secret=S3CR3T", "S3CR3T"),
    ("input.storage_options={key: AKIA123, secret: S3CR3T}", "S3CR3T"),
    ("{'endpoint_url': 'http://h:1', 'secret': 'two words'}", "two words"),
    ('{"token":"T0K"}', "T0K"),
    ("https://h/x?X-Amz-Credential=AKIA123&X-Amz-Signature=abc123", "abc123"),
    ("ValueError: token=a+b/c== is bad", "a+b/c=="),
])
def test_text_loses_credentials(text, secret):
    clean = redact_text(text)
    assert secret not in clean and MASK in clean


def test_ordinary_text_is_kept():
    for text in ("chi^2/dof = 99; sigma=3", "no mosaic at 's3://bucket/m.zarr'",
                 "pass --storage-option key=... --storage-option secret=...",
                 "endpoint_url=http://127.0.0.1:9000", "at 12:30: done"):
        assert redact_text(text) == text


def test_messages_show_urls_without_credentials():
    url = "s3://AKIA123:S3CR3T@bucket/m.zarr"
    line = one_line(MosaicNotFoundError(f"no mosaic at '{url}': the path does not exist"))
    assert "S3CR3T" not in line and "AKIA123" not in line and "s3://***@bucket/m.zarr" in line
    line = one_line(RuntimeError(f"boom with storage options {{'secret': 'S3CR3T'}} at {url}"))
    assert "S3CR3T" not in line and "rerun with --debug" in line


def test_mosaic_provenance_is_recorded_without_credentials():
    record = provenance(source="https://u:pa55@host/frame.dm4", storage_options={"secret": "x"})
    assert record["source"] == "https://***@host/frame.dm4"
    assert record["storage_options"] == {"secret": MASK}


def test_storage_option_parsing():
    assert storage_options(["endpoint_url=http://h:9000", "anon=true", "use_ssl=False"]) == {
        "endpoint_url": "http://h:9000", "anon": True, "use_ssl": False}
    assert storage_options(None) == {}
    with pytest.raises(InputError, match="KEY=VALUE") as info:
        storage_options(["S3CR3T"])
    assert "S3CR3T" not in str(info.value)  # a value typed without its key is not echoed


def test_every_storage_command_takes_storage_option():
    from stemscale.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("simulate", "ingest", "info", "find", "detect", "run"):
        assert "--storage-option" in sub.choices[name].format_help(), name
