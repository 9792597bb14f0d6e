"""Which failures are retried: the network's are, the object's answers and configuration errors are not.

A configuration error that reaches the HTTP client comes back from
aiobotocore as ``HTTPClientError``, the same class as a dropped connection.
Retrying it five times and reporting "gave up after 5 attempts; raise
read_attempts" would send the user after the network; it is raised at once,
as the ``TypeError``/``ValueError`` it is, naming the option.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, HTTPClientError

from fsspec_s3reader import S3ReaderFileSystem
from fsspec_s3reader.retry import configuration_error, is_transient


def _client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "SlowDown"), (400, "RequestTimeout")])
def test_server_errors_and_throttling_are_transient(status: int, code: str) -> None:
    assert is_transient(_client_error(status, code))


@pytest.mark.parametrize(
    ("status", "code"), [(403, "AccessDenied"), (404, "NoSuchKey"), (412, "PreconditionFailed"), (416, "InvalidRange")]
)
def test_answers_about_the_object_are_final(status: int, code: str) -> None:
    assert not is_transient(_client_error(status, code))


@pytest.mark.parametrize(
    "error",
    [
        HTTPClientError(error=ConnectionResetError("reset by peer")),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_connection_failures_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize("underlying", [TypeError("unsupported operand"), ValueError("invalid literal")])
def test_an_http_client_error_around_a_type_or_value_error_is_raised_as_such_not_retried(
    underlying: Exception,
) -> None:
    wrapped = HTTPClientError(error=underlying)
    assert is_transient(wrapped) is False
    error = configuration_error(wrapped)
    assert isinstance(error, type(underlying))
    assert "configuration, not on the network" in str(error)
    assert "config_kwargs" in str(error) and "client_kwargs" in str(error)


def test_a_connection_failure_is_not_a_configuration_error() -> None:
    assert configuration_error(HTTPClientError(error=ConnectionResetError())) is None
    assert configuration_error(TypeError("not from the HTTP client")) is None


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_pool_connections", "many"), ("connect_timeout", "5"), ("read_timeout", "5")],
)
def test_a_bad_http_setting_that_slips_past_the_checks_fails_at_once_naming_it(
    storage_options: dict, bucket: str, option: str, value: str
) -> None:
    fs = S3ReaderFileSystem(skip_instance_cache=True, read_attempts=5, **storage_options)
    fs.pipe_file(f"{bucket}/k", b"abc")
    # botocore's HTTP client is the one these options configure
    reading = S3ReaderFileSystem(skip_instance_cache=True, read_attempts=5, lean_requests=False, **storage_options)
    reading.config_kwargs[option] = value  # after the constructor's checks, before the client exists
    with pytest.raises(TypeError, match=rf"most likely config_kwargs\['{option}'\] has a value of the wrong type") as e:
        reading.open(f"{bucket}/k", "rb")
    assert isinstance(e.value.__cause__, HTTPClientError)
    assert reading.stats.get_requests == 1  # the open's first GET, sent once: not retried


@pytest.mark.parametrize(
    ("config_kwargs", "error", "message"),
    [
        (
            {"max_pool_connections": "many"},
            TypeError,
            r"config_kwargs\['max_pool_connections'\] must be an int.*'many'",
        ),
        ({"max_pool_connections": 0}, ValueError, r"config_kwargs\['max_pool_connections'\] must be >= 1.*got 0"),
        ({"connect_timeout": "5"}, TypeError, r"config_kwargs\['connect_timeout'\] must be a number of seconds.*'5'"),
        ({"read_timeout": -1}, ValueError, r"config_kwargs\['read_timeout'\] must be a number of seconds >= 0.*-1"),
        ({"retries": 3}, TypeError, r"config_kwargs\['retries'\] must be a dict such as .*got 3"),
        ({"retries": {"max_attempts": "3"}}, TypeError, r"\['max_attempts'\] must be an int, got '3'"),
        ({"retries": {"max_attempts": -1}}, ValueError, r"\['max_attempts'\] must be >= 0, got -1"),
        ({"retries": {"mode": "fast"}}, ValueError, r"\['mode'\] must be one of legacy, standard, adaptive.*'fast'"),
        ({"retries": {"attempts": 3}}, ValueError, r"config_kwargs\['retries'\] takes max_attempts.*'attempts'"),
        ({"tcp_keepalive": "yes"}, TypeError, r"config_kwargs\['tcp_keepalive'\] must be True or False.*'yes'"),
        ({"proxies": 5}, TypeError, r"config_kwargs\['proxies'\] must map a scheme to a proxy URL.*got 5"),
        ({"max_pool_connection": 4}, TypeError, r"takes no 'max_pool_connection'; did you mean 'max_pool_connections'"),
    ],
)
def test_config_kwargs_botocore_would_choke_on_are_refused_at_construction(
    storage_options: dict, config_kwargs: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        S3ReaderFileSystem(skip_instance_cache=True, config_kwargs=config_kwargs, **storage_options)


def test_good_config_kwargs_pass_the_checks_and_reach_botocore(storage_options: dict, bucket: str) -> None:
    config_kwargs = {
        "max_pool_connections": 4,
        "connect_timeout": 5,
        "read_timeout": 7.5,
        "retries": {"max_attempts": 2, "mode": "standard"},
        "tcp_keepalive": True,
    }
    fs = S3ReaderFileSystem(skip_instance_cache=True, config_kwargs=config_kwargs, **storage_options)
    fs.pipe_file(f"{bucket}/k", b"abc")
    assert fs.cat_file(f"{bucket}/k") == b"abc"
    with fs.open(f"{bucket}/k", "rb") as f:
        assert f.read() == b"abc"
