"""The repository: the LMDB index (a cache), refcounts, the open path, index sync."""
