"""The `campaigns` command (`main`): the local stack, each service on its own, and the
operator commands over gRPC (`operator`, with their tables in `views`)."""
