"""MLflow's tracking REST API: request messages, handlers, search; ``routes`` is the table."""
