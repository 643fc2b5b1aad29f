"""Use cases over a repository: take, restore, gc, verify, repair, copy; retention policy."""
