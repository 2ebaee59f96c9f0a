"""Durable jobs: the queue with leases, workers, what each kind of job runs, events and webhooks."""
