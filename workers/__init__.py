"""deltahub background jobs (ingest, rebase, gc, verify) and the Celery app that runs them."""
