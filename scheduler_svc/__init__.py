"""scheduler_svc: owns schedule state as an event-sourced log and emits run requests on time."""
