"""The dataset kinds :func:`iadbe.data.load_dataset` reads: the one list the CLI and the app offer.

A module of its own, importing nothing, so ``iadbe --help`` and the app's first page can show it without
loading the layout parsers (:data:`iadbe.data.layouts.KIND_LAYOUTS` says which layouts each kind accepts).
"""

KINDS = ("mvtec", "mvtec3d", "btech", "kolektor", "visa", "folder")
