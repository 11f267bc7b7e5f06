"""TLS of the Redis connections: the CA, client certificate and key files of a service, as
redis-py keyword arguments and as an `ssl.SSLContext` for the pipelined lock transport.

Every ``rediss://`` connection of a service (state Redis, Sentinels, lock masters) uses the same
files (``<PREFIX>_REDIS_TLS_CA_FILE``, ``..._CERT_FILE``, ``..._KEY_FILE``). Without a CA file the
system's trust store verifies the server; the server certificate is always verified and its
name checked against the host of the URL. A client certificate (mutual TLS) is optional.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files; empty: not used."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file)

    def problems(self, setting_prefix: str) -> list[str]:
        """What is wrong with the files, each naming its setting (empty: usable)."""
        found = []
        if self.key_file and not self.cert_file:
            found.append(
                f"{setting_prefix}REDIS_TLS_KEY_FILE is set without {setting_prefix}"
                "REDIS_TLS_CERT_FILE: a client key needs its certificate"
            )
        for name, path in (("CA", self.ca_file), ("CERT", self.cert_file), ("KEY", self.key_file)):
            if path and not Path(path).is_file():
                found.append(
                    f"{setting_prefix}REDIS_TLS_{name}_FILE: {path} is not a readable file"
                )
        return found

    def redis_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of a redis-py client of a ``rediss://`` URL."""
        kwargs: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if self.ca_file:
            kwargs["ssl_ca_certs"] = self.ca_file
        if self.cert_file:
            kwargs["ssl_certfile"] = self.cert_file
            kwargs["ssl_keyfile"] = self.key_file or None
        return kwargs


_VERIFY_MODES = {
    None: ssl.CERT_REQUIRED,
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
# redis-py TLS options that `context_from_redis_kwargs` cannot honour: refused, not ignored.
_UNSUPPORTED = ("ssl_ca_path", "ssl_ca_data", "ssl_password", "ssl_ciphers", "ssl_min_version")


def context_from_redis_kwargs(kwargs: dict[str, Any]) -> ssl.SSLContext:
    """The client `ssl.SSLContext` that redis-py would build from a pool's ``ssl_*`` kwargs."""
    unsupported = [name for name in _UNSUPPORTED if kwargs.get(name) is not None]
    if unsupported:
        raise ValueError(f"TLS options not supported by the pipelined transport: {unsupported}")
    reqs = kwargs.get("ssl_cert_reqs")
    if isinstance(reqs, str):
        reqs = reqs.lower()
    verify = reqs if isinstance(reqs, ssl.VerifyMode) else _VERIFY_MODES[reqs]
    context = ssl.create_default_context(cafile=kwargs.get("ssl_ca_certs"))
    context.check_hostname = bool(kwargs.get("ssl_check_hostname", True)) and (
        verify != ssl.CERT_NONE
    )
    context.verify_mode = verify
    if kwargs.get("ssl_certfile"):
        context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"))
    return context
