"""How the operator commands reach the scheduler: the target, the token, and TLS.

Every operator action takes the same connection options; each has an environment variable
(``CAMPAIGNS_*``, read by `CliSettings`), and a flag wins over its variable:

    --target HOST:PORT   CAMPAIGNS_SCHEDULER_TARGET   (default 127.0.0.1:50051)
                         CAMPAIGNS_TOKEN              Bearer token (one of SCHEDULER_API_KEYS)
    --tls                CAMPAIGNS_TLS=true           TLS with the system's roots
    --ca-file FILE       CAMPAIGNS_TLS_CA_FILE        TLS, the scheduler checked against FILE
    --cert-file FILE     CAMPAIGNS_TLS_CERT_FILE      client certificate (mutual TLS) ...
    --key-file FILE      CAMPAIGNS_TLS_KEY_FILE       ... and its key
    --server-name NAME   CAMPAIGNS_TLS_SERVER_NAME    the name the scheduler's certificate has

The token has no flag on purpose: a flag would show in the process list and shell history.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import grpc

from campaign_common.errors import CampaignCommonError
from campaign_common.grpc_tls import ClientTls, aio_channel

# flag -> argparse keywords; the dest names match the settings fields they override.
CONNECTION_ARGUMENTS: dict[str, dict[str, Any]] = {
    "--target": {"help": "scheduler host:port (env CAMPAIGNS_SCHEDULER_TARGET)"},
    "--tls": {
        "action": "store_true",
        "default": None,
        "help": "dial TLS, checking the scheduler with the system's roots (env CAMPAIGNS_TLS)",
    },
    "--ca-file": {
        "type": Path,
        "help": "dial TLS, checking the scheduler against this CA bundle (PEM; env "
        "CAMPAIGNS_TLS_CA_FILE)",
    },
    "--cert-file": {
        "type": Path,
        "help": "client certificate for mutual TLS (PEM; env CAMPAIGNS_TLS_CERT_FILE)",
    },
    "--key-file": {
        "type": Path,
        "help": "key of the client certificate (PEM; env CAMPAIGNS_TLS_KEY_FILE)",
    },
    "--server-name": {
        "help": "check the scheduler's certificate for this name instead of the target's "
        "host (env CAMPAIGNS_TLS_SERVER_NAME)",
    },
}


class ConnectionOptionsError(CampaignCommonError, ValueError):
    """The connection options do not fit together; the message says which to change."""


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    for flag, keywords in CONNECTION_ARGUMENTS.items():
        group.add_argument(flag, **keywords)


def _pick(flag: Any, setting: Any) -> Any:
    return flag if flag is not None else setting


def client_tls(args: argparse.Namespace, settings: Any) -> ClientTls | None:
    """TLS of the channel from the flags over the ``CAMPAIGNS_TLS_*`` settings; None: plain."""
    ca = _pick(args.ca_file, settings.tls_ca_file)
    cert = _pick(args.cert_file, settings.tls_cert_file)
    key = _pick(args.key_file, settings.tls_key_file)
    name = _pick(args.server_name, settings.tls_server_name)
    if (cert is None) != (key is None):
        raise ConnectionOptionsError(
            "a client certificate needs its key: give --cert-file and --key-file together "
            "(or CAMPAIGNS_TLS_CERT_FILE and CAMPAIGNS_TLS_KEY_FILE)"
        )
    if not (_pick(args.tls, settings.tls) or ca is not None or cert is not None):
        return None
    return ClientTls(ca, cert, key, name, prefix="CAMPAIGNS_")


def open_channel(args: argparse.Namespace, settings: Any) -> grpc.aio.Channel:
    """The channel to the scheduler the options and settings describe."""
    target = args.target or settings.scheduler_target
    return aio_channel(target, client_tls(args, settings))
