"""The jobs the workers run (ingest, rebase, settle, gc, verify), pure of Celery: the in-process pool
and the Celery tasks call the same functions."""
