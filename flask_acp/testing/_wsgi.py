"""Plumbing shared by the fake servers."""

from __future__ import annotations

import socket
import typing as t


def drop_connection(environ: t.Mapping[str, t.Any], reason: str) -> t.NoReturn:
    """Close the client's connection without an answer (a "lost response" fault).

    Shuts the socket down, then raises :class:`ConnectionResetError`, which
    werkzeug treats as "client went away" and answers nothing.
    """
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionResetError(reason)
