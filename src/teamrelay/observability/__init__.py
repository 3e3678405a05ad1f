"""What operators see: Prometheus metrics and one structured log line per request."""
