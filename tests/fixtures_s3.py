"""S3 server fixture (moto_server on 127.0.0.1)."""
