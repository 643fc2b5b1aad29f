"""Where repository files live: the backend interface, local and S3 backends, locks and leases."""
