"""Pure formats and algorithms: bytes in, bytes out, no I/O, no settings, no globals."""
