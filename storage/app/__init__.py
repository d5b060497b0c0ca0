"""The application layer: the hub's use cases (upload, commit, read, repositories) over the catalog and
the object store, and the facade the service and CLI call."""
