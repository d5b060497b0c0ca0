"""The Xet protocol's pure core: content-defined chunking, hashing, and the xorb and shard formats.

Everything here follows the public Xet protocol specification, with the real `hf_xet` client as the
judge where the two disagree. Uploads are hostile input: every parser checks every rule before a byte is
trusted, each rule with its own exception (see `errors`).
"""
