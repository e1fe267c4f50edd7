"""The C99/NEON firmware sources, shipped as package data (``bnnhw.firmware``).

:mod:`bnnhw.gen.firmware` builds them with this folder's ``Makefile`` into a build folder of
its own; nothing is ever written here.
"""
