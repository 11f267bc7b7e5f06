"""What a process tells about itself: JSON logs (`logs`), traces (`telemetry`,
`trace_export`) and Prometheus metrics (`metrics`, `grpc_metrics`, `redis_metrics`)."""
