"""A real deployment on this machine: api-server, scheduler, dag-processor, Celery workers, a browser, compose."""
