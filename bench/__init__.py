"""Throughput benchmark: the model's own ceiling, a draining worker, HTTP end to end, and a
synchronous baseline shaped like the original project, measured side by side in one run."""
