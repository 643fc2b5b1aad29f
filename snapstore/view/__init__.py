"""Read-only views of snapshots: the vfs, the mount namespace, diff and versions."""
