"""TLS of the scheduler's gRPC API, optionally mutual, for its server and every client of it.

The server serves TLS when it has a certificate and key (PEM files); given a client CA bundle
as well, it requires a client certificate signed by it (mutual TLS) and refuses the handshake
of a client without one. A client dials TLS when it has a CA bundle (or asks for TLS with the
system's roots), presents its own certificate and key when both are given, and may check the
server's certificate against another name than the one it dials (``server_name``: a service
reached by IP or through a tunnel).

Files are read when the server or channel is built; one that cannot be read is a `TlsError`
naming the setting that points to it. Settings classes check the combinations (a certificate
without its key, a client CA without a server certificate) with `check_pair`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from campaign_common.errors import CampaignCommonError

Options = tuple[tuple[str, Any], ...]


class TlsError(CampaignCommonError, ValueError):
    """A TLS file cannot be read; the message names the setting and the file."""


def check_pair(cert: Path | None, key: Path | None, cert_setting: str, key_setting: str) -> None:
    """A certificate and its key come together; one without the other is a setting error."""
    if (cert is None) != (key is None):
        given, missing = (cert_setting, key_setting) if key is None else (key_setting, cert_setting)
        raise ValueError(f"{given} is set but {missing} is not: set both (PEM files) or neither")


def _read(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{setting}={path}: cannot read it ({exc.strerror or exc})") from exc
    if b"-----BEGIN" not in data:
        raise TlsError(f"{setting}={path}: not a PEM file (no '-----BEGIN' line)")
    return data


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate chain and key, and the CA of the client certificates it
    requires (None: clients need no certificate). ``prefix`` names the settings in errors."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    prefix: str = ""

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def credentials(self) -> grpc.ServerCredentials:
        p = self.prefix
        pair = (
            _read(self.key_file, f"{p}TLS_KEY_FILE"),
            _read(self.cert_file, f"{p}TLS_CERT_FILE"),
        )
        client_ca = (
            _read(self.client_ca_file, f"{p}TLS_CLIENT_CA_FILE")
            if self.client_ca_file is not None
            else None
        )
        return grpc.ssl_server_credentials(
            [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
        )


@dataclass(frozen=True)
class ClientTls:
    """How a client checks the server (CA bundle; None: the system's roots) and proves who it
    is (certificate and key, for mutual TLS). ``prefix`` names the settings in errors."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str = ""
    prefix: str = ""

    def credentials(self) -> grpc.ChannelCredentials:
        p = self.prefix
        ca = _read(self.ca_file, f"{p}TLS_CA_FILE") if self.ca_file is not None else None
        cert = key = None
        if self.cert_file is not None and self.key_file is not None:
            cert = _read(self.cert_file, f"{p}TLS_CERT_FILE")
            key = _read(self.key_file, f"{p}TLS_KEY_FILE")
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )

    def options(self) -> Options:
        if not self.server_name:
            return ()
        return (("grpc.ssl_target_name_override", self.server_name),)


def aio_channel(target: str, tls: ClientTls | None, options: Options = ()) -> grpc.aio.Channel:
    """An asyncio channel to ``target``: TLS with ``tls``, plaintext without."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, tls.credentials(), options=(*options, *tls.options()))


def sync_channel(target: str, tls: ClientTls | None, options: Options = ()) -> grpc.Channel:
    """A blocking channel to ``target`` (probes, the local stack's readiness check)."""
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, tls.credentials(), options=(*options, *tls.options()))
