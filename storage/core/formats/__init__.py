"""File formats: each module recognises its files by content, parses them as hostile input and cuts
them into segments that rebuild the file byte-exact (see registry.py)."""
