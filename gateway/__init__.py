"""The REST gateway: FastAPI routes in front of the scheduler's gRPC API.

`app.create_app` builds the app (routes), `server.GatewayServer`/`server.serve` run it under
uvicorn, `config.GatewaySettings` configures it (``GATEWAY_*``). `models` are the REST
documents, `convert` maps them to and from protobuf, `scheduler_client` calls the scheduler,
`errors` renders every error and maps gRPC codes to HTTP, `auth` checks API keys.
"""
