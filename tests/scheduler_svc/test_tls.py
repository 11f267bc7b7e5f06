"""TLS and mutual TLS of the scheduler's gRPC API over real gRPC, with certificates made for the
test: the API and health over TLS, plaintext and certificate-less clients refused, the gateway
and the CLI dialling TLS, and settings or files that do not fit named clearly."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from campaign_common.grpc_tls import ClientTls, aio_channel
from campaigns.v1 import scheduler_service_pb2 as api
from campaigns.v1 import scheduler_service_pb2_grpc as api_grpc
from gateway.config import GatewaySettings
from scheduler_svc.config import SchedulerSettings
from scheduler_svc.server import SchedulerServer
from tests.gateway.conftest import running_gateway
from tests.support import ROOT

SERVER_NAME = "scheduler.campaigns.test"  # the only name on the server's certificate


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # trusts nothing here


def _write(cert: trustme.LeafCert, folder: Path, name: str) -> tuple[Path, Path]:
    chain, key = folder / f"{name}.crt", folder / f"{name}.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.crt"))
    other.cert_pem.write_to_path(str(folder / "other-ca.crt"))
    server_cert, server_key = _write(ca.issue_cert(SERVER_NAME), folder, "server")
    client_cert, client_key = _write(ca.issue_cert("gateway.campaigns.test"), folder, "client")
    return Pki(
        folder / "ca.crt", server_cert, server_key, client_cert, client_key, folder / "other-ca.crt"
    )


async def _serve(state_url: str, **tls: object) -> SchedulerServer:
    server = SchedulerServer(
        SchedulerSettings(  # type: ignore[arg-type]
            state_redis_url=state_url, host="127.0.0.1", port=0, log_block_ms=200, **tls
        )
    )
    await server.start()
    return server


@pytest.fixture
async def tls_target(state_url: str, pki: Pki) -> AsyncIterator[str]:
    server = await _serve(state_url, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop()


@pytest.fixture
async def mtls_target(state_url: str, pki: Pki) -> AsyncIterator[str]:
    server = await _serve(
        state_url,
        tls_cert_file=pki.server_cert,
        tls_key_file=pki.server_key,
        tls_client_ca_file=pki.ca,
    )
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def _health(channel: grpc.aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)


async def _list(channel: grpc.aio.Channel) -> list[object]:
    stub = api_grpc.SchedulerServiceStub(channel)  # type: ignore[no-untyped-call]
    return list((await stub.ListSchedules(api.ListSchedulesRequest(), timeout=5)).schedules)


async def test_tls_serves_the_api_and_health_to_a_client_that_trusts_it(
    tls_target: str, pki: Pki
) -> None:
    tls = ClientTls(ca_file=pki.ca, server_name=SERVER_NAME)
    async with aio_channel(tls_target, tls) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await _list(channel) == []


@pytest.mark.parametrize(
    "how", ["plaintext", "untrusted CA", "wrong name"], ids=lambda how: how.replace(" ", "-")
)
async def test_tls_server_refuses_a_client_that_cannot_or_does_not_verify_it(
    tls_target: str, pki: Pki, how: str
) -> None:
    tls = {
        "plaintext": None,
        "untrusted CA": ClientTls(ca_file=pki.other_ca, server_name=SERVER_NAME),
        "wrong name": ClientTls(ca_file=pki.ca),  # dials 127.0.0.1, not on the certificate
    }[how]
    async with aio_channel(tls_target, tls) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _health(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_a_client_without_a_certificate_and_accepts_one_with_it(
    mtls_target: str, pki: Pki
) -> None:
    anonymous = ClientTls(ca_file=pki.ca, server_name=SERVER_NAME)
    async with aio_channel(mtls_target, anonymous) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _list(channel)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    known = ClientTls(pki.ca, pki.client_cert, pki.client_key, SERVER_NAME)
    async with aio_channel(mtls_target, known) as channel:
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await _list(channel) == []


async def test_gateway_calls_the_scheduler_over_mutual_tls(mtls_target: str, pki: Pki) -> None:
    files = {"scheduler_tls_ca_file": pki.ca, "scheduler_tls_server_name": SERVER_NAME}
    client_files = {
        "scheduler_tls_cert_file": pki.client_cert,
        "scheduler_tls_key_file": pki.client_key,
    }
    async with running_gateway(scheduler_target=mtls_target, **files, **client_files) as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/v1/schedules")).status_code == 200
    async with running_gateway(scheduler_target=mtls_target, **files) as client:
        assert (await client.get("/readyz")).status_code == 503
        response = await client.get("/v1/schedules")
        assert response.status_code == 503 and response.json()["code"] == "UNAVAILABLE"


async def _cli(target: str, *args: str, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "campaign_common.cli", "schedules", "list", "--target", target,
        *args, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    return process.returncode or 0, err.decode()


async def test_cli_dials_mutual_tls_from_flags_or_environment(mtls_target: str, pki: Pki) -> None:
    ca = ("--ca-file", str(pki.ca), "--server-name", SERVER_NAME)
    pair = ("--cert-file", str(pki.client_cert), "--key-file", str(pki.client_key))
    assert (await _cli(mtls_target, *ca, *pair))[0] == 0
    env = {
        "CAMPAIGNS_TLS_CA_FILE": str(pki.ca),
        "CAMPAIGNS_TLS_CERT_FILE": str(pki.client_cert),
        "CAMPAIGNS_TLS_KEY_FILE": str(pki.client_key),
        "CAMPAIGNS_TLS_SERVER_NAME": SERVER_NAME,
    }
    assert (await _cli(mtls_target, **env))[0] == 0
    code, err = await _cli(mtls_target, *ca)  # no client certificate: unavailable, retryable
    assert code == 6 and "UNAVAILABLE" in err
    code, err = await _cli(mtls_target, *ca, "--cert-file", str(pki.client_cert))
    assert code == 2 and "--key-file" in err
    code, err = await _cli(mtls_target, "--ca-file", str(pki.ca.with_name("missing.crt")))
    assert code == 8 and "CAMPAIGNS_TLS_CA_FILE" in err and "missing.crt" in err


def test_settings_name_a_certificate_without_its_key_and_client_ca_without_tls(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="SCHEDULER_TLS_KEY_FILE"):
        SchedulerSettings(tls_cert_file=pki.server_cert)
    with pytest.raises(ValidationError, match="mutual TLS, which needs TLS"):
        SchedulerSettings(tls_client_ca_file=pki.ca)
    with pytest.raises(ValidationError, match="GATEWAY_SCHEDULER_TLS_CERT_FILE"):
        GatewaySettings(scheduler_tls_key_file=pki.client_key)


def test_scheduler_with_an_unreadable_certificate_exits_naming_the_setting(
    tmp_path: Path, pki: Pki
) -> None:
    import subprocess

    not_pem = tmp_path / "server.crt"
    not_pem.write_text("not a certificate")
    env = {
        **os.environ,
        "SCHEDULER_TLS_CERT_FILE": str(not_pem),
        "SCHEDULER_TLS_KEY_FILE": str(pki.server_key),
        "SCHEDULER_STATE_REDIS_URL": "redis://127.0.0.1:1/0",  # never reached
    }
    done = subprocess.run(
        [sys.executable, "-m", "scheduler_svc"], env=env, cwd=ROOT, capture_output=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "SCHEDULER_TLS_CERT_FILE" in done.stderr.decode() and "not a PEM file" in (
        done.stderr.decode()
    )
