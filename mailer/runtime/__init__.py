"""Running as a service: the daemon and its worker threads, the broker, leases, reload, systemd,
health, the HTTP endpoint, metrics, logs, and the checks before start."""
