"""The repository format: chunking, compression, pack files, trees and snapshot records (no I/O)."""
