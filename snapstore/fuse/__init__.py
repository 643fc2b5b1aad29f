"""The FUSE mount: a thin pyfuse3 + trio adapter over :mod:`snapstore.view.namespace`.

``adapter`` holds the one :class:`pyfuse3.Operations` subclass; ``runner`` mounts, serves,
unmounts and detects stale mounts. pyfuse3 and trio come with the ``fuse`` extra
(``pip install 'snapstore[fuse]'``) and are imported only when a mount is used, so importing
this package (and running any other ``snap`` command) never needs them.
"""
